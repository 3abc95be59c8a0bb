"""The study page in headless Chromium (issue 20, item 5): a rater votes through the real page served by
`realrag human-eval serve`, the server is killed mid-session and restarted, and every vote is in the database
once. A screenshot of the page is kept in artifacts/ui_test/ (the README's picture is taken from it)."""

import signal
import sqlite3
import subprocess
import time

import pytest

from test_human_eval_server import _study
from test_ui import CHROMEDRIVER, CHROMIUM, SHOTS, VENV_BIN, _free_port, _up, _wait, browser  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them where apt-get is allowed)",
    ),
]


def _serve(config, port, log):
    proc = subprocess.Popen(
        [str(VENV_BIN / "realrag"), "human-eval", "serve", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _wait(lambda: _up(f"http://127.0.0.1:{port}/") or proc.poll() is not None, 60, "the study page")
    assert proc.poll() is None, "the server exited"
    return proc


def _progress(driver):
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, "progress").text  # "Task 3 of 20"
    return int(text.split()[1]) - 1 if text else None


def _answer_one(driver):
    """Answers the task on screen with its keyboard shortcuts; returns the progress it was at."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    at = _progress(driver)
    visible = [c for c in ("which", "real_or_generated", "rating") if driver.find_element(By.ID, c).is_displayed()]
    assert len(visible) == 1
    keys = {"which": "1", "real_or_generated": "g", "rating": "52"}[visible[0]]
    ActionChains(driver).send_keys(keys).perform()
    return at


def test_a_rater_votes_in_the_browser_and_a_killed_server_loses_nothing(
    browser,  # noqa: F811 - test_ui's fixture, imported above
    smoke_config_file,
    smoke_cfg,
    tmp_path,
):
    from selenium.webdriver.common.by import By

    root = smoke_cfg.artifacts_root
    study, rows = _study(root)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(tmp_path / "serve.log", "w") as log:
        server = _serve(smoke_config_file, port, log)
        try:
            browser.get(url)
            browser.find_element(By.ID, "rater").send_keys("browser-1")
            browser.find_element(By.ID, "start").click()
            _wait(lambda: browser.find_element(By.ID, "task").is_displayed(), 20, "the first task", every=0.2)
            SHOTS.mkdir(parents=True, exist_ok=True)
            browser.set_window_size(1100, 760)
            browser.save_screenshot(str(SHOTS / "human_eval_page.png"))
            page = browser.page_source
            for secret in (
                "reflective",
                "contrastive",
                *(r["path"] for r in rows),
                *(r["retriever_id"] for r in rows if r["retriever_id"]),
            ):
                assert secret not in page
            half = len(study.tasks) // 2
            for i in range(half):
                assert _answer_one(browser) == i
                _wait(lambda i=i: _progress(browser) == i + 1, 20, f"task {i + 2}", every=0.2)
            server.send_signal(signal.SIGKILL)  # a crash mid-session
            server.wait(10)
            server = _serve(smoke_config_file, port, log)
            browser.get(url)  # the rater id is remembered by the browser; the server resumes from the database
            _wait(lambda: browser.find_element(By.ID, "task").is_displayed(), 20, "the task after restart", every=0.2)
            assert _progress(browser) == half
            for i in range(half, len(study.tasks)):
                assert _answer_one(browser) == i
                if i + 1 < len(study.tasks):
                    _wait(lambda i=i: _progress(browser) == i + 1, 20, f"task {i + 2}", every=0.2)
            _wait(lambda: browser.find_element(By.ID, "done").is_displayed(), 20, "the end of the study", every=0.2)
        finally:
            server.terminate()
            server.wait(10)
    time.sleep(0.2)
    with sqlite3.connect(root / "human_eval" / "votes.sqlite") as conn:
        votes = conn.execute("SELECT task_id, rater, answer, faithfulness, realism FROM votes").fetchall()
    assert len(votes) == len({v[0] for v in votes}) == len(study.tasks)
    assert {v[1] for v in votes} == {"browser-1"}
    kinds = {t["task_id"]: t["kind"] for t in study.tasks}
    for task_id, _, answer, faithfulness, realism in votes:
        expected = {
            "pairwise": ("a", None, None),
            "gold": ("a", None, None),
            "real_or_generated": ("generated", None, None),
        }
        assert (answer, faithfulness, realism) == expected.get(kinds[task_id], (None, 5, 2))
