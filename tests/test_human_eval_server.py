"""The study page and the vote store (issue 20, items 2 and 4), through Starlette's test client on a study built
here from RAG-like rows and PNGs on disk."""

import concurrent.futures
import io
import json
import sqlite3

import pyarrow.parquet as pq
import pytest
from PIL import Image
from starlette.testclient import TestClient

from realrag_core.config.operations import HumanEvalConfig
from realrag_core.human_eval.tasks import build_tasks, current_study, write_tasks
from realrag_core.human_eval.app import SESSION_COOKIE, create_app
from realrag_core.human_eval.server import Study, VoteStore, export_votes

ARMS = ("none", "clip", "contrastive", "reflective")


def _study(tmp_path, tag="v1", seed=0):
    rag = tmp_path / "rag"
    rows, real = [], {}
    for split in ("known", "novel"):
        for c in range(3):
            concept = f"{split} thing {c}"
            pid = f"p-{split}-{c}"
            img = Image.new("RGB", (32, 32), (40 * c, 100 if split == "known" else 200, 7))
            (tmp_path / "real").mkdir(parents=True, exist_ok=True)
            real_path = tmp_path / "real" / f"{split}-{c}.jpg"
            Image.new("RGB", (64, 48), (9, 9, 9)).save(real_path)  # another size and encoding than G's PNGs
            real[concept] = [str(real_path)]
            for arm in ARMS:
                ref = None if arm == "none" else f"db-{arm}-{split}-{c}"
                path = f"images/g/{pid}/{ref or 'none'}_0.png"
                (rag / path).parent.mkdir(parents=True, exist_ok=True)
                img.save(rag / path)
                rows.append(
                    {
                        "protocol": "unseen_concepts",
                        "arm": arm,
                        "retriever_seed": None if arm in ("none", "clip") else 0,
                        "retriever_id": "" if arm == "none" else f"{arm}:{tag}",
                        "prompt_id": pid,
                        "prompt": f"a photo of a {concept}",
                        "concept": concept,
                        "generator_split": split,
                        "seed": 0,
                        "path": path,
                        "retrieved_id": ref,
                    }
                )
    cfg = HumanEvalConfig(seed=seed, pairwise_per_cell=2, rating_per_cell=1, real_or_generated_per_cell=1)
    table, _ = build_tasks(rows, real, cfg)
    folder = tmp_path / "human_eval"
    write_tasks(table, folder)
    return Study(current_study(folder), rag), rows


def _client(study, votes, **kw):
    client = TestClient(create_app(study, votes, **kw), base_url="http://127.0.0.1")
    assert client.get("/").status_code == 200  # sets the session cookie
    return client


def _answer(task):
    if task["controls"] == "rating":
        return {"faithfulness": 5, "realism": 3}
    return {"answer": "a" if task["controls"] == "which" else "real"}


def _vote(client, rater, **extra):
    data = client.get("/api/next", params={"rater": rater}).json()
    if data["task"] is None:
        return None, data
    body = {"task": data["task"]["token"], "rater": rater, "csrf": data["csrf"], **_answer(data["task"]), **extra}
    return client.post("/api/vote", json=body), data


def _count(tmp_path):
    with sqlite3.connect(tmp_path / "votes.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]


def test_a_rater_votes_through_every_task_and_each_vote_is_stored_once(tmp_path):
    study, _ = _study(tmp_path)
    votes = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    client = _client(study, votes)
    seen = []
    while True:
        response, data = _vote(client, "alice")
        if response is None:
            break
        assert response.status_code == 200, response.json()
        seen.append(data["task"]["token"])
        assert data["progress"] == {"done": len(seen) - 1, "total": len(study.tasks)}
    assert len(seen) == len(set(seen)) == len(study.tasks) == _count(tmp_path)
    rows = votes.rows(study.study)
    assert {r["rater"] for r in rows} == {"alice"}
    for r in rows:
        task = next(t for t in study.tasks if t["task_id"] == r["task_id"])
        if task["kind"] == "rating":
            assert (r["faithfulness"], r["realism"], r["answer"]) == (5, 3, None)
        else:
            assert r["answer"] in ("a", "real")
    # a second rater starts from the beginning, in an order of their own
    order_b = [study.next_task("bob", set())["task_id"]]
    assert order_b[0] in {t["task_id"] for t in study.tasks}


def test_nothing_a_rater_is_served_names_an_arm_a_retriever_a_path_or_a_seed(tmp_path):
    study, rows = _study(tmp_path)
    votes = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    client = _client(study, votes)
    served = [client.get("/").text]
    while True:
        response, data = _vote(client, "carol")
        served.append(json.dumps(data))
        if response is None:
            break
        served.append(response.text)
        for token in data["task"]["images"]:
            served.append(client.get(f"/image/{token}").headers.get("content-type", ""))
    text = "\n".join(served)
    secrets_ = {r["retriever_id"] for r in rows if r["retriever_id"]} | {r["path"] for r in rows}
    secrets_ |= {r["retrieved_id"] for r in rows if r["retrieved_id"]} | {r["prompt_id"] for r in rows}
    secrets_ |= {str(tmp_path), "reflective", "contrastive", "oracle", "retriever", "gold", "seed"}
    assert not [s for s in secrets_ if s in text]
    for t in study.tasks:  # the task id is not the token either
        assert t["task_id"] not in text


def test_bad_votes_are_refused_with_a_reason_and_nothing_is_stored(tmp_path):
    study, _ = _study(tmp_path)
    other, _ = _study(tmp_path / "other", tag="v2", seed=3)  # another study version, its own secret
    votes = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    client = _client(study, votes)
    data = client.get("/api/next", params={"rater": "dave"}).json()
    good = {"task": data["task"]["token"], "rater": "dave", "csrf": data["csrf"], **_answer(data["task"])}
    other_token = other.token("task", other.tasks[0]["task_id"])
    cases = {
        "forged": ({**good, "task": "x" * 24}, 400, "no such task"),
        "other study": ({**good, "task": other_token}, 400, "no such task"),
        "markup rater": ({**good, "rater": "<script>alert(1)</script>"}, 400, "rater id"),
        "no csrf": ({k: v for k, v in good.items() if k != "csrf"}, 403, "CSRF"),
        "wrong csrf": ({**good, "csrf": study.csrf("dave", "another-session")}, 403, "CSRF"),
        "csrf of another rater": ({**good, "rater": "eve"}, 403, "CSRF"),
    }
    if data["task"]["controls"] == "rating":
        cases["out of scale"] = ({**good, "faithfulness": 8}, 400, "1 to 7")
    else:
        cases["bad answer"] = ({**good, "answer": "left"}, 400, "answer must be")
    for name, (body, status, reason) in cases.items():
        response = client.post("/api/vote", json=body)
        assert response.status_code == status and reason in response.json()["error"], name
    assert client.post("/api/vote", content=b"not json").status_code == 400
    assert _count(tmp_path) == 0
    assert client.post("/api/vote", json=good).status_code == 200
    replay = client.post("/api/vote", json=good)  # the same vote again
    assert replay.status_code == 409 and "already voted" in replay.json()["error"]
    assert _count(tmp_path) == 1
    assert client.get("/api/next", params={"rater": "<b>x</b>"}).status_code == 400
    # without the browser session's cookie the CSRF token is worthless
    stranger = TestClient(create_app(study, votes), base_url="http://127.0.0.1")
    assert stranger.post("/api/vote", json={**good, "task": data["task"]["token"]}).status_code == 403


def test_only_allowed_host_headers_are_answered(tmp_path):
    study, _ = _study(tmp_path)
    votes = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    assert TestClient(create_app(study, votes), base_url="http://evil.example").get("/").status_code == 400
    proxied = TestClient(
        create_app(study, votes, allowed_hosts=("study.lab.example",)), base_url="https://study.lab.example"
    )
    assert proxied.get("/").status_code == 200


def test_a_restart_resumes_where_each_rater_was_and_concurrent_sessions_lose_nothing(tmp_path):
    study, _ = _study(tmp_path)
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    client = _client(study, VoteStore(url))
    first = [_vote(client, "frank")[1]["task"]["token"] for _ in range(3)]
    # the server goes away; a new process opens the same study and database
    study_again = Study(study.folder, study.rag_dir)
    client = _client(study_again, VoteStore(url))
    data = client.get("/api/next", params={"rater": "frank"}).json()
    assert data["progress"]["done"] == 3 and data["task"]["token"] not in first
    assert study_again.secret == study.secret  # the same tokens after a restart

    def rater_session(name):
        c = _client(study_again, VoteStore(url))
        n = 0
        while (r := _vote(c, name)[0]) is not None:
            assert r.status_code == 200
            n += 1
        return n

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(rater_session, ["g1", "g2", "g3", "g4"]))
    assert counts == [len(study.tasks)] * 4
    assert _count(tmp_path) == 3 + 4 * len(study.tasks)


def test_images_are_served_as_png_at_the_generated_size_and_export_keeps_lineage(tmp_path):
    study, _ = _study(tmp_path)
    votes = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    client = _client(study, votes)
    assert client.get("/image/not-a-token").status_code == 404
    sizes = set()
    for token in study.images:
        response = client.get(f"/image/{token}")
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG" and not image.info.get("exif")
        sizes.add(image.size)
    assert sizes == {(32, 32)}  # the 64 x 48 JPEG real pictures too
    for _ in range(4):
        _vote(client, "hana")
    out = export_votes(study, votes, tmp_path / "votes.parquet")
    table = pq.read_table(out).to_pylist()
    assert len(table) == 4 and {"a_arm", "b_arm", "a_retriever_id", "answer_key", "kind"} <= set(table[0])
    assert export_votes(study, votes, tmp_path / "votes.csv").read_text().count("\n") == 5  # header + 4


def test_serving_before_any_study_says_what_to_materialize(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize human_eval_tasks"):
        current_study(tmp_path / "human_eval")


def test_the_session_cookie_is_http_only_and_same_site(tmp_path):
    study, _ = _study(tmp_path)
    client = TestClient(create_app(study, VoteStore(f"sqlite:///{tmp_path / 'v.sqlite'}")), base_url="http://127.0.0.1")
    header = client.get("/").headers["set-cookie"]
    assert SESSION_COOKIE in header and "HttpOnly" in header and "SameSite=strict" in header


def test_the_cli_exports_the_latest_study_of_a_profile(smoke_config_file, smoke_cfg, capsys):
    from realrag_core.cli import main

    root = smoke_cfg.artifacts_root
    assert main(["human-eval", "export", "--config", str(smoke_config_file)]) == 2  # no study yet: a clear error
    assert "materialize human_eval_tasks" in capsys.readouterr().err
    study, _ = _study(root)
    client = _client(study, VoteStore(f"sqlite:///{root / 'human_eval' / 'votes.sqlite'}"))
    _vote(client, "ines")
    out = root / "export" / "votes.csv"
    assert main(["human-eval", "export", "--config", str(smoke_config_file), "--out", str(out)]) == 0
    assert f"1 votes of study {study.study}" in capsys.readouterr().out and out.read_text().count("\n") == 2


def test_the_votes_sensor_asks_for_scores_once_per_new_vote_count(smoke_config_file, smoke_cfg):
    import dagster as dg

    from assets.resources import RealRagConfigResource
    from pipelines.sensors import human_eval_votes

    def tick(cursor):
        resources = {"realrag": RealRagConfigResource(config_path=str(smoke_config_file))}
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return human_eval_votes(context), context.cursor

    none, _ = tick(None)
    assert isinstance(none, dg.SkipReason) and "no human study" in none.skip_message
    root = smoke_cfg.artifacts_root
    study, _ = _study(root)
    empty, _ = tick(None)
    assert isinstance(empty, dg.SkipReason)  # a study with no votes: nothing to score
    client = _client(study, VoteStore(f"sqlite:///{root / 'human_eval' / 'votes.sqlite'}"))
    _vote(client, "jo")
    first, cursor = tick(None)
    assert isinstance(first, dg.RunRequest) and [k.to_user_string() for k in first.asset_selection] == ["human_eval"]
    again, same = tick(cursor)
    assert isinstance(again, dg.SkipReason) and same == cursor
    _vote(client, "jo")
    more, new = tick(cursor)
    assert isinstance(more, dg.RunRequest) and new != cursor and more.run_key != first.run_key
