"""The UI in a real browser: `dagster dev` on the smoke profile, driven by headless Chromium (Debian's
chromium + chromedriver, through selenium). The six stages appear in the asset graph; a materialization of
`retriever` launched by clicking the UI's Materialize button reaches success; screenshots are saved in
artifacts/ui_test/."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from realrag_core.config.base import PROJECT_ROOT

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
STAGES = ["image_embeddings", "generated_images", "reflective_negatives", "retriever", "rag_images", "fid"]
SHOTS = PROJECT_ROOT / "artifacts" / "ui_test"
VENV_BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them where apt-get is allowed)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, every: float = 1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _dismiss_welcome(browser) -> None:
    """The first visit may open Dagster's community dialog over the page: its Skip button closes it."""
    time.sleep(3)
    skip = _button(browser, "Skip")
    if skip is not None:
        skip.click()
        time.sleep(1)


def _button(browser, label: str):
    """The enabled button with this label, or None (also while React re-renders it under our feet)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        for button in browser.find_elements(By.TAG_NAME, "button"):
            if button.text.strip() == label and button.is_enabled():
                return button
    except StaleElementReferenceException:
        pass
    return None


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=2400,1800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_ui_shows_the_stages_and_a_retriever_materialization_launched_from_it_succeeds(
    smoke_config_file, tmp_path, browser
):
    import dagster as dg

    from assets.checks import ALL_CHECKS
    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource

    home = tmp_path / "dagster_home"
    home.mkdir()
    project = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({k: project[k] for k in ("telemetry", "concurrency", "run_retries")})
    )
    # the stages above retriever, recorded in the instance the UI shows
    upstream = [
        "image_source",
        "world_splits",
        "prompts",
        "clip_backbone",
        "judge",
        "generator",
        "image_embeddings",
        "generated_images",
        "reflective_negatives",
    ]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=upstream,
            tags=ALL_SHARDS,
            instance=instance,
            resources={"realrag": RealRagConfigResource(config_path=str(smoke_config_file))},
        ).success
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(home),
        "REALRAG_CONFIG": str(smoke_config_file),
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",
    }
    log = open(tmp_path / "dagster_dev.log", "w")
    server = subprocess.Popen(
        [str(VENV_BIN / "dagster"), "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        _wait(lambda: _up(f"{base}/server_info"), 240, "dagster dev to serve")
        # the realrag group's lineage graph (only nodes in view are in the page: a large window holds all six)
        browser.get(f"{base}/locations/__repository__@pipelines.definitions/asset-groups/realrag")
        _dismiss_welcome(browser)
        _wait(lambda: all(s in browser.page_source for s in STAGES), 240, "the six stages in the asset graph")
        browser.save_screenshot(str(SHOTS / "asset_graph.png"))

        browser.get(f"{base}/assets/retriever")
        _dismiss_welcome(browser)

        def click_materialize():
            from selenium.common.exceptions import StaleElementReferenceException

            button = _button(browser, "Materialize")
            try:
                return button is not None and (button.click() or True)
            except StaleElementReferenceException:
                return False

        _wait(click_materialize, 120, "the Materialize button of retriever to be clicked")

        def finished():
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = [r for r in instance.get_runs() if dg.AssetKey("retriever") in (r.asset_selection or set())]
                done = [
                    r
                    for r in runs
                    if r.status
                    in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
                ]
                return done[0] if done else None

        run = _wait(finished, 480, "the retriever run launched from the UI to finish", every=3)
        browser.get(f"{base}/runs/{run.run_id}")
        _wait(lambda: "retriever" in browser.page_source, 60, "the run page")
        time.sleep(2)
        browser.save_screenshot(str(SHOTS / "retriever_run.png"))
        assert run.status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "dagster_dev.log").read_text()[-4000:]
        # the only run whose selection holds retriever is the one the click launched (the upstream run above has none)
        browser.get(f"{base}/assets/retriever")
        _wait(lambda: run.run_id[:8] in browser.page_source, 60, "the asset page naming the run")
        time.sleep(2)
        browser.save_screenshot(str(SHOTS / "retriever_asset.png"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
