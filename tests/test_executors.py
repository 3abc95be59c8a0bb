"""The main job on other executors gives exactly the in-process result: Dagster's multiprocess executor (on an
S3-compatible store), and Celery workers behind a real Redis broker (dagster-celery). Each run goes through the
dagster CLI with a persistent instance, against one in-process reference run of the smoke profile shared by the
module."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import pytest
import torch
import yaml

from realrag_core.config.base import PROJECT_ROOT
from conftest import smoke_dict

# the steps compute with the torch thread count the in-process reference ran with (one per core, or fewer under
# pytest-xdist), so their floats round the same way
THREADS = str(torch.get_num_threads())
VENV_BIN = Path(sys.executable).parent


def profile(tmp: Path, name: str, **extra) -> tuple[Path, Path]:
    """A copy of the smoke profile rooted at tmp/name: (artifacts root, profile file)."""
    data = {**smoke_dict(tmp / name), **extra}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return Path(data["artifacts_root"]), path


def instance_home(tmp: Path) -> Path:
    """A persistent Dagster instance with the project's pools and run retries."""
    home = tmp / "dagster_home"
    home.mkdir()
    instance = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({k: instance[k] for k in ("concurrency", "run_retries")}))
    return home


def run_job(job: str, env: dict) -> str:
    proc = subprocess.run(
        [str(VENV_BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions", "-j", job],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RUN_SUCCESS" in log, log[-4000:]
    return log


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every stage and check of the smoke profile in one in-process run: the artifacts root."""
    import dagster as dg

    from assets.checks import ALL_CHECKS
    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource

    root, path = profile(tmp_path_factory.mktemp("reference"), "in_process")
    assert dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], tags=ALL_SHARDS, resources={"realrag": RealRagConfigResource(config_path=str(path))}
    ).success
    return root


def assert_same_outputs(ours: Path, reference: Path, run_outputs, table_uri: str | None = None) -> None:
    """Same table rows, generated and RAG manifests, negatives, results, and every PNG byte for byte."""

    def rooted(rows, root):  # source paths differ only by the artifacts root
        return [
            {k: v.replace(str(root.parent), "<root>") if isinstance(v, str) else v for k, v in r.items()} for r in rows
        ]

    def table_rows(root, uri=None):
        rows = lancedb.connect(uri or str(root / "lancedb")).open_table("image_embeddings").to_arrow()
        return rooted(rows.drop(["added_at"]).sort_by("id").to_pylist(), root)

    assert table_rows(ours, table_uri) == table_rows(reference) != []
    mine, theirs = run_outputs(ours), run_outputs(reference)
    for part in ("generated", "rag", "negatives", "results"):
        assert rooted(mine[part], ours) == rooted(theirs[part], reference) != [], part
    assert mine["images"] == theirs["images"] != {}


def pickled(path: Path) -> bool:
    """A pickle (protocol 2+) or a torch zip archive, which holds one."""
    import zipfile

    with path.open("rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    return zipfile.is_zipfile(path) and any(n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist())


@pytest.mark.slow
def test_every_checkpoint_of_a_full_run_is_safetensors(reference):
    """Safety: the full smoke run (every asset and check) writes its weights as safetensors and no pickle."""
    files = [f for f in reference.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix == ".safetensors"]
    stages = {f.relative_to(reference / "checkpoints").parts[0] for f in weights}
    assert {"clip_backbone", "judge", "generator", "retriever", "contrastive_retriever"} <= stages
    assert [f for f in files if f.suffix in {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt"} or pickled(f)] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 60.0, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{what}: a process exited with {p.returncode}"
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_celery_workers_with_a_redis_broker_give_the_in_process_result(reference, tmp_path, run_outputs):
    """dagster-celery: Debian's redis-server started here as broker and result backend, two worker processes
    (celery -A pipelines.celery_engine worker, as README "Scaling out" starts them), the main job's steps sent to
    them as Celery tasks by `dagster job execute -j realrag_celery`."""
    pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (pip install -e '.[celery]')")
    redis = pytest.importorskip("redis")
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not found (apt-get install redis-server; README command 2 installs it as root)")
    root, path = profile(tmp_path, "celery")
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {
        "PATH": str(VENV_BIN),
        "REALRAG_CONFIG": str(path),
        "HOME": str(tmp_path),
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": THREADS,
        "DAGSTER_HOME": str(instance_home(tmp_path)),
        "REALRAG_CELERY_BROKER": broker,
    }
    procs, logs = [], []
    try:
        procs.append(
            subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        client = redis.Redis(host="127.0.0.1", port=port)

        def answers():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(answers, "redis-server", procs=procs)
        for name in ("w1", "w2"):
            logs.append(tmp_path / f"{name}.log")
            procs.append(
                subprocess.Popen(
                    [
                        str(VENV_BIN / "celery"),
                        "-A",
                        "pipelines.celery_engine",
                        "worker",
                        "-Q",
                        "dagster",
                        "--pool",
                        "solo",
                        "--prefetch-multiplier=1",
                        "-n",
                        f"{name}@%h",
                        "--loglevel",
                        "INFO",
                        "--logfile",
                        str(logs[-1]),
                    ],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for(
            lambda: all(log.is_file() and "ready." in log.read_text() for log in logs),
            "two celery workers",
            timeout=120,
            procs=procs,
        )
        run_job("realrag_celery", env)
        tasks = [log.read_text().count("] succeeded in") for log in logs]
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    from assets.checks import ALL_CHECKS
    from pipelines.definitions import ALL_ASSETS

    # every step (an asset or a check) ran as a task on a worker, and both workers took part
    assert sum(tasks) == len(ALL_ASSETS) + len(ALL_CHECKS) and min(tasks) > 0, tasks
    assert_same_outputs(root, reference, run_outputs)


@pytest.mark.slow
def test_artifacts_and_table_on_an_s3_server_each_step_in_its_own_process(
    reference, s3_server, s3_bucket, tmp_path, run_outputs
):
    """Dagster's multiprocess executor (each step its own process) with artifacts_uri on an S3-compatible server
    (moto, on localhost): every step pulls the working copy and pushes what it wrote, the LanceDB table lives on
    the server. A new machine (the working copy wiped) pulls the same outputs as the in-process run, and can run a
    stage alone from there. (A separate multiprocess run on a local store was dropped to save five minutes of CI:
    this run goes through the same executor and the same stages, plus the sync.)"""
    from realrag_core.storage.sync import ArtifactSync

    uri = f"s3://{s3_bucket}/realrag"
    root, path = profile(tmp_path, "s3", artifacts_uri=uri)
    env = {
        "PATH": str(VENV_BIN),
        "REALRAG_CONFIG": str(path),
        "HOME": str(tmp_path),
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": THREADS,
        "DAGSTER_HOME": str(instance_home(tmp_path)),
        **s3_server,
    }
    log = run_job("realrag_multiprocess", env)
    assert "Executing steps using multiprocess executor" in log
    assert log.count(f"artifacts {root} -> {uri}: push") >= 14  # once per step (and per check)
    assert not (root / "lancedb").exists()  # the table is on the server
    shutil.rmtree(root)
    ArtifactSync(uri, root).pull()
    assert_same_outputs(root, reference, run_outputs, table_uri=f"{uri}/lancedb")
    results = run_outputs(root)["results"]
    shutil.rmtree(root)  # another new machine: only fid, in a new process
    proc = subprocess.run(
        [str(VENV_BIN / "dagster"), "asset", "materialize", "--select", "fid", "-m", "pipelines.definitions"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    fresh = tmp_path / "check"
    ArtifactSync(uri, fresh).pull(("reports/",))
    import pyarrow.parquet as pq

    assert pq.read_table(fresh / "reports" / "results.parquet").to_pylist() == results != []
