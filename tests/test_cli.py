"""The dagster CLI as a user runs it: separate processes, a temporary instance, a shell whose only
variables are PATH (.venv/bin) and the profile."""

import subprocess
import sys
from pathlib import Path

import lancedb
import pytest
import yaml

from realrag_core.config.base import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent


def _own_home(tmp_path) -> str:
    """A Dagster instance of the test's own: with [tool.dg] in pyproject.toml a command run from the repository
    root without DAGSTER_HOME was seen queueing in the working copy's instance (behind its gpu pool slot)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return str(home)


def _dagster(args, config_file, tmp_path):
    env = {"PATH": str(VENV_BIN), "REALRAG_CONFIG": str(config_file), "HOME": str(tmp_path), "TQDM_DISABLE": "1"}
    env["DAGSTER_HOME"] = _own_home(tmp_path)
    proc = subprocess.run(
        [str(VENV_BIN / "dagster"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _script(name, args, config_file, tmp_path):
    """One of scripts/ run as its documentation says, on the given profile."""
    home = tmp_path / "dagster_home"  # never the working copy's instance (its run history and pool slots)
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "REALRAG_CONFIG": str(config_file),
        "HOME": str(tmp_path),
        "TQDM_DISABLE": "1",
        "DAGSTER_HOME": str(home),
    }
    proc = subprocess.run(
        ["bash", f"scripts/{name}", *map(str, args)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _materialize_second_profile(data, selection, tmp_path):
    """``data`` as a second profile with its own artifacts (tmp_path/second), materialized through the CLI."""
    data["artifacts_root"] = str(tmp_path / "second")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(data))
    _dagster(["asset", "materialize", "--select", selection, "-m", "pipelines.definitions"], second, tmp_path)


@pytest.mark.slow
def test_materialize_image_embeddings_from_the_cli(smoke_config_file, smoke_cfg, tmp_path):
    _dagster(
        ["asset", "materialize", "--select", "image_source,world_splits,clip_backbone", "-m", "pipelines.definitions"],
        smoke_config_file,
        tmp_path,
    )
    # a new process with a fresh temporary instance: inputs come from the artifact store, not Dagster IO
    _dagster(
        ["asset", "materialize", "--select", "image_embeddings", "-m", "pipelines.definitions"],
        smoke_config_file,
        tmp_path,
    )
    table = lancedb.connect(str(smoke_cfg.artifacts_root / "lancedb")).open_table("image_embeddings")
    rows = table.to_arrow()
    assert rows.num_rows == 36
    assert set(rows["style"].to_pylist()) == {"filled", "shadow", "striped"}
    assert "outline" not in set(rows["style"].to_pylist())  # pre-training style stays out of the database


def test_generate_cli_refuses_no_prompt_and_a_file_out_for_several_before_loading_anything(tmp_path, capsys):
    from realrag_core.cli import main

    missing = str(tmp_path / "no-such-profile.yaml")  # never read: both are refused first
    assert main(["generate", "--config", missing]) == 2
    assert "no prompt" in capsys.readouterr().err
    listed = tmp_path / "prompts.txt"
    listed.write_text("a blue square\n\n")
    assert main(["generate", "a red circle", "--prompts-file", str(listed), "--out", "x.png", "--config", missing]) == 2
    assert "2 prompts: --out names a folder" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_generate_cli_says_what_to_run_when_stages_are_missing(smoke_config_file, tmp_path):
    env = {"PATH": str(VENV_BIN), "REALRAG_CONFIG": str(smoke_config_file), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(VENV_BIN / "realrag"), "generate", "a red circle", "--rag"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "materialize" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_dg_lists_and_checks_the_definitions(smoke_config_file, tmp_path):
    """`dg list defs` and `dg check defs` from the repository root ([tool.dg] in pyproject.toml)."""
    import json

    env = {"PATH": str(VENV_BIN), "REALRAG_CONFIG": str(smoke_config_file), "HOME": str(tmp_path), "TQDM_DISABLE": "1"}
    env["DAGSTER_HOME"] = _own_home(tmp_path)

    def dg_cli(*args):
        proc = subprocess.run(
            [str(VENV_BIN / "dg"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    listed = json.loads(dg_cli("list", "defs", "--json"))
    from pipelines.definitions import defs

    assets = {a["asset_key"] for a in listed["assets"]}
    assert assets == {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"image_embeddings", "retriever", "fid"} <= assets
    assert {j["name"] for j in listed["jobs"]} >= {"realrag", "retrain_retrievers"}
    assert "image_embeddings:no_label_conflicts" in {c["key"] for c in listed["asset_checks"]}
    assert "All definitions loaded successfully" in dg_cli("check", "defs")


@pytest.mark.slow
def test_workspace_yaml_loads_the_code_location(smoke_config_file, tmp_path):
    proc = _dagster(["definitions", "validate", "-w", "workspace.yaml"], smoke_config_file, tmp_path)
    assert "realrag" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_generator_weights_script_on_smoke_and_shipped_weights_are_used(smoke_config_file, smoke_data, tmp_path):
    """The documented command that makes the shipped demo weights, run on the smoke profile; a profile that
    points at its output then uses them instead of training."""
    import json

    out = tmp_path / "weights"
    _script("train_demo_generator.sh", [out], smoke_config_file, tmp_path)
    info = json.loads((out / "generator.json").read_text())
    assert (out / "diffusion_pytorch_model.safetensors").is_file() and info["command"].startswith("bash scripts/")
    assert json.loads((out / "text_encoder" / "training.json").read_text())["key"] == info["text_key"]
    smoke_data["generator"]["shipped_weights"] = str(out)
    _materialize_second_profile(smoke_data, "image_source,world_splits,clip_backbone,judge,generator", tmp_path)
    report = json.loads((tmp_path / "second" / "reports" / "generator.json").read_text())
    assert report["source"] == "shipped" and report["key"] == info["key"]


@pytest.mark.slow
def test_base_clip_and_judge_weights_script_on_smoke_and_shipped_weights_are_used(
    smoke_config_file, smoke_data, tmp_path
):
    """scripts/train_demo_models.sh on the smoke profile; a profile pointing at its output takes those weights
    (no training) and one whose recipe differs refuses them."""
    import json

    _script("train_demo_models.sh", [tmp_path / "clip", tmp_path / "judge"], smoke_config_file, tmp_path)
    assert list((tmp_path / "dagster_home").rglob("*.db"))  # its runs went to the DAGSTER_HOME it was given
    made = {m: json.loads((tmp_path / m / "training.json").read_text()) for m in ("clip", "judge")}
    smoke_data["clip"]["shipped_weights"] = str(tmp_path / "clip")
    smoke_data["judge"]["shipped_weights"] = str(tmp_path / "judge")
    smoke_data["judge"]["train"]["steps"] = 31  # another judge recipe: its shipped weights are refused
    _materialize_second_profile(smoke_data, "image_source,world_splits,clip_backbone,judge", tmp_path)
    clip = json.loads((tmp_path / "second" / "reports" / "clip_backbone.json").read_text())
    judge = json.loads((tmp_path / "second" / "reports" / "judge.json").read_text())
    assert clip["source"] == "shipped" and clip["model_id"] == made["clip"]["model_id"]
    assert judge["source"] == "trained" and judge["model_id"] != made["judge"]["model_id"]


@pytest.mark.slow
def test_main_job_then_one_stage_in_a_new_shell_and_time_per_asset(smoke_config_file, tmp_path):
    """README command 1's job on the smoke profile with a persistent instance, then `--select retriever` in a
    new process, then the per-asset time table read back from the instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())  # the project's pool limit and retries
    (home / "dagster.yaml").write_text(yaml.safe_dump({k: instance[k] for k in ("concurrency", "run_retries")}))
    env = {
        "PATH": str(VENV_BIN),
        "REALRAG_CONFIG": str(smoke_config_file),
        "HOME": str(tmp_path),
        "TQDM_DISABLE": "1",
        "DAGSTER_HOME": str(home),
    }

    def run(args):
        proc = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    import dagster as dg

    # the job through Dagster's current CLI, as README command 1 runs it (scripts/demo.sh)
    out = run([str(VENV_BIN / "dg"), "launch", "--job", "realrag"])
    assert "RUN_SUCCESS" in out and "BetaWarning" not in out  # the one beta notice we silence, by its message
    out = run([str(VENV_BIN / "python"), "-m", "pipelines.timings", "--json", str(tmp_path / "t.json")])
    import json

    steps = {r["asset"]: r for r in json.loads((tmp_path / "t.json").read_text())["steps"]}
    from pipelines.definitions import defs

    pools = {
        k.to_user_string(): defs.resolve_assets_def(k).node_def.pool
        for k in defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert pools["rag_images"] == pools["retriever"] == pools["image_embeddings"] == "gpu" and pools["prompts"] is None
    assert {"image_embeddings", "retriever", "retriever_ablations", "rag_images", "fid"} <= set(steps)
    assert all(r["status"] == "SUCCESS" and r["seconds"] >= 0 for r in steps.values()) and "rag_images" in out
    # one stage in a new process, with the classic command the user named and with dg
    out = run(
        [str(VENV_BIN / "dagster"), "asset", "materialize", "--select", "retriever", "-m", "pipelines.definitions"]
    )
    assert "RUN_SUCCESS" in out and "Use 'dg launch --assets <selection>' instead" in out  # Dagster's advice: it works
    out = run([str(VENV_BIN / "dg"), "launch", "--assets", "retriever"])
    assert "RUN_SUCCESS" in out and "SupersessionWarning" not in out
    with dg.DagsterInstance.from_config(str(home)) as instance:  # both runs recorded a retriever materialization
        events = instance.fetch_materializations(dg.AssetKey("retriever"), limit=10).records
        assert len(events) == 3  # the job's, the classic command's, dg's
    # the one-prompt CLI on what the job left behind: retrieval-augmented, then text only
    out_rag = run([str(VENV_BIN / "realrag"), "generate", "a red circle", "--rag", "--out", str(tmp_path / "rag.png")])
    assert "retrieved (reflective, retriever:" in out_rag and "reference-conditioned" in out_rag
    out = run([str(VENV_BIN / "realrag"), "generate", "a red circle", "--seed", "3", "--out", str(tmp_path / "t.png")])
    assert "text only" in out
    import numpy as np
    from PIL import Image

    assert Image.open(tmp_path / "rag.png").size == Image.open(tmp_path / "t.png").size
    # several prompts: one batched retrieval, a folder of images and their index; the prompt alone and in the batch
    # retrieves the same picture and makes the same image up to float rounding (a batch of one may take other
    # matrix kernels: at most one level apart)
    single = next(line for line in out_rag.splitlines() if line.startswith("retrieved ("))
    listed = tmp_path / "prompts.txt"
    listed.write_text("a blue square\n\na green triangle\n")
    many = tmp_path / "many"
    out = run(
        [
            str(VENV_BIN / "realrag"),
            "generate",
            "a red circle",
            "--prompts-file",
            str(listed),
            "--rag",
            "--out",
            str(many),
        ]
    )
    assert "wrote 3 images and index.json" in out and out.count("retrieved (reflective, retriever:") == 3
    index = json.loads((many / "index.json").read_text())["images"]
    assert [r["prompt"] for r in index] == ["a red circle", "a blue square", "a green triangle"]
    assert [r["image"] for r in index] == ["0000.png", "0001.png", "0002.png"]
    assert single.endswith(index[0]["retrieved_path"]) and all(r["retrieved_path"] for r in index)
    alone, batched = (np.asarray(Image.open(p), dtype=np.int16) for p in (tmp_path / "rag.png", many / "0000.png"))
    assert np.abs(alone - batched).max() <= 1


def test_compare_puts_runs_side_by_side_keyed_by_dataset_generator_encoder(smoke_data, tmp_path):
    import pyarrow.parquet as pq
    import yaml

    from realrag_core.cli import main
    from realrag_core.storage.store import ArtifactStore

    paths = []
    for name, generator, acc in (("sdxl_run", "diffusers:sdxl@abc", 0.25), ("flux_run", "diffusers:flux@def", 0.5)):
        data = {**smoke_data, "name": name, "artifacts_root": str(tmp_path / name)}
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(data))
        store = ArtifactStore(tmp_path / name)
        store.write_report("generator", {"generator_id": generator})
        store.write_report("clip_backbone", {"model_id": "open_clip:ViT-L-14/openai:1234"})
        store.write_report(
            "fid",
            {
                "results": [
                    {
                        "arm": "reflective",
                        "split": "novel",
                        "metric": "concept_acc",
                        "value": acc,
                        "n": 8,
                        "lo": 0,
                        "hi": 1,
                    },
                    {
                        "arm": "reflective",
                        "split": "novel",
                        "metric": "fid",
                        "value": 40.0 / acc,
                        "n": 8,
                        "lo": None,
                        "hi": None,
                    },
                    {"arm": "reflective", "split": "novel", "metric": "retrieved_style/photo", "value": 1.0, "n": 8},
                    {
                        "protocol": "seen_concepts",
                        "arm": "reflective",
                        "split": "novel",
                        "metric": "concept_acc",
                        "value": acc + 0.4,
                        "n": 8,
                        "lo": 0,
                        "hi": 1,
                    },
                ]
            },
        )
    out = tmp_path / "cmp" / "cars"
    assert main(["compare", *map(str, paths), "--out", str(out)]) == 0
    table = pq.read_table(out.with_suffix(".parquet")).to_pylist()
    assert {(r["generator"], r["protocol"], r["metric"], r["value"]) for r in table} == {
        ("diffusers:sdxl@abc", "unseen_concepts", "concept_acc", 0.25),
        ("diffusers:sdxl@abc", "unseen_concepts", "fid", 160.0),
        ("diffusers:flux@def", "unseen_concepts", "concept_acc", 0.5),
        ("diffusers:flux@def", "unseen_concepts", "fid", 80.0),
        ("diffusers:sdxl@abc", "seen_concepts", "concept_acc", 0.65),
        ("diffusers:flux@def", "seen_concepts", "concept_acc", 0.9),
    }
    md = out.with_suffix(".md").read_text().splitlines()
    assert len([line for line in md if "| unseen_concepts | novel | reflective | 0." in line]) == 2
    [seen] = [line for line in md if "flux" in line and "| seen_concepts | novel | reflective |" in line]
    assert "0.900 (n=8)" in seen  # each protocol's number in its own labelled row
    assert all(r["encoder"] == "open_clip:ViT-L-14/openai:1234" and r["dataset"] == "synthetic" for r in table)
    unfinished = tmp_path / "empty.yaml"
    unfinished.write_text(yaml.safe_dump({**smoke_data, "name": "empty", "artifacts_root": str(tmp_path / "empty")}))
    assert main(["compare", str(unfinished), "--out", str(out)]) == 2  # a run without results: a clear message


def _serves_the_code_location(command, config_file, tmp_path) -> set[str]:
    """Start a dev server, wait until its GraphQL lists the code location, return its asset keys; stop it."""
    import json
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(home),
        "REALRAG_CONFIG": str(config_file),
        "OMP_NUM_THREADS": "1",
    }
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename "
        "... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } } } } } } }"
    )
    log = open(tmp_path / "dev.log", "w")
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps({"query": query}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as r:
                    entries = json.loads(r.read())["data"]["workspaceOrError"]["locationEntries"]
                loaded = [
                    e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
                ]
                if loaded:
                    return {
                        "/".join(n["assetKey"]["path"])
                        for e in loaded
                        for repo in e["locationOrLoadError"]["repositories"]
                        for n in repo["assetNodes"]
                    }
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(2)
        raise AssertionError(f"{command} did not serve the code location: {(tmp_path / 'dev.log').read_text()[-3000:]}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["dg", "dev"], ["dagster", "dev", "-w", "workspace.yaml"]],
    ids=["dg dev", "dagster dev -w workspace.yaml"],
)
def test_the_dev_server_serves_the_code_location(command, smoke_config_file, tmp_path):
    assets = _serves_the_code_location([str(VENV_BIN / command[0]), *command[1:]], smoke_config_file, tmp_path)
    assert {"image_embeddings", "generated_images", "reflective_negatives", "retriever", "rag_images", "fid"} <= assets
