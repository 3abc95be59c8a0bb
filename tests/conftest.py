"""Shared fixtures: the smoke profile re-rooted in a temporary folder, and a small user-style source with
bad files in it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import yaml
from PIL import Image

from realrag_core.config.base import PROJECT_ROOT
from realrag_core.config.loading import parse_config
from realrag_core.data.sources.synthetic import draw_concept

os.environ.setdefault("TQDM_DISABLE", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist: the cores are shared out, not oversubscribed
    import torch

    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))  # for the subprocesses tests start


def smoke_dict(root: Path) -> dict:
    data = yaml.safe_load((PROJECT_ROOT / "configs" / "smoke.yaml").read_text())
    data["artifacts_root"] = str(root / "artifacts")
    data["source"]["image_dir"] = str(root / "artifacts" / "source")
    return data


@pytest.fixture
def smoke_data(tmp_path) -> dict:
    return smoke_dict(tmp_path)


@pytest.fixture
def smoke_cfg(smoke_data, tmp_path):
    return parse_config(smoke_data, tmp_path)


@pytest.fixture
def smoke_config_file(smoke_data, tmp_path) -> Path:
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(smoke_data))
    return path


# Stage tests start from a prepared store instead of materializing the stages above them from empty. The smoke
# profile's stages run once per session, in order, and the store is kept as it stood after each of the stages
# named here; a test restores one of these snapshots into the one folder they were made in (the table's rows and
# the manifests hold absolute paths under it), so no two tests of one process share a store and none sees another's
# changes. Tests of from-empty behaviour, refusals before any work and resumption after a crash start from empty
# (their own tmp_path): README "Tests" lists them.
PREPARED_STAGES = {
    "image_embeddings": [
        "image_source",
        "world_splits",
        "prompts",
        "clip_backbone",
        "judge",
        "generator",
        "image_embeddings",
    ],
    "generated_images": ["generated_images"],
    "reflective_negatives": ["reflective_negatives"],
}


class PreparedSmoke:
    """The smoke profile's stores after each of ``PREPARED_STAGES``, made on first use and restored on demand."""

    def __init__(self, base: Path):
        self.work = base / "work"  # every snapshot is made, and restored, here
        self.snapshots = base / "snapshots"
        self.data = smoke_dict(self.work)
        self.made: list[str] = []

    def _run(self, selection: list[str]) -> None:
        import dagster as dg

        from assets.checks import ALL_CHECKS
        from assets.partitions import ALL_SHARDS
        from assets.resources import RealRagConfigResource
        from pipelines.definitions import ALL_ASSETS

        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=selection,
            tags=ALL_SHARDS,
            resources={"realrag": RealRagConfigResource(config_path=str(self.config_file))},
        )
        assert result.success

    @property
    def config_file(self) -> Path:
        return self.work / "smoke.yaml"

    def _restore(self, stage: str | None) -> None:
        import shutil

        if self.work.exists():
            shutil.rmtree(self.work)
        if stage is None:  # from empty: only the profile
            self.work.mkdir(parents=True)
            self.config_file.write_text(yaml.safe_dump(self.data))
        else:  # each snapshot holds the profile it was made with
            shutil.copytree(self.snapshots / stage, self.work, symlinks=True)

    def restore(self, stage: str):
        """The store as it stood after ``stage`` (and every stage above it), in ``self.work``: (profile file, config)."""
        import shutil

        if stage not in PREPARED_STAGES:
            raise KeyError(f"no prepared smoke store after {stage!r}; one of {sorted(PREPARED_STAGES)}")
        order = list(PREPARED_STAGES)
        while stage not in self.made:
            nxt = order[len(self.made)]
            self._restore(self.made[-1] if self.made else None)
            self._run(PREPARED_STAGES[nxt])
            shutil.copytree(self.work, self.snapshots / nxt, symlinks=True)
            self.made.append(nxt)
        self._restore(stage)
        return self.config_file, parse_config(self.data, self.work)


@pytest.fixture(scope="session")
def _prepared_smoke(tmp_path_factory) -> PreparedSmoke:
    return PreparedSmoke(tmp_path_factory.mktemp("prepared_smoke"))


@pytest.fixture
def prepared_smoke(_prepared_smoke):
    """A function: ``prepared_smoke(stage)`` restores the smoke store as it stood after ``stage`` and returns
    (profile file, parsed config) rooted in that store's folder; the test may change it at will."""
    return _prepared_smoke.restore


GOOD = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("orange", "star")]
STYLES = ("filled", "shadow")


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A captions-file source: 4 concepts x 2 styles of real drawings, one picture under two captions, one
    listed twice, and one file of each kind of damage."""
    root = tmp_path / "user_images"
    root.mkdir()
    rows = []
    for colour, shape in GOOD:
        for style in STYLES:
            name = f"{style}-{colour}-{shape}.png"
            draw_concept(colour, shape, style, 32).save(root / name)
            rows.append({"path": name, "caption": f"{colour} {shape}", "concept": f"{colour} {shape}", "style": style})
    # the same picture under a second caption is a second row; the same pair twice is one row
    rows.append({"path": "filled-red-circle.png", "caption": "a red disc", "concept": "red circle", "style": "filled"})
    rows.append(dict(rows[0]))
    # damage, each of which must become a recorded reject
    (root / "empty.png").write_bytes(b"")
    full = (root / "filled-blue-square.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "not_an_image.png").write_text("this is text, not pixels")
    (root / "folder.png").mkdir()  # a folder named like an image
    Image.new("RGB", (4, 4), "red").save(root / "tiny.png")
    for bad in ("empty.png", "truncated.png", "not_an_image.png", "folder.png", "tiny.png", "missing.png"):
        rows.append({"path": bad, "caption": "red circle", "concept": "red circle", "style": "filled"})
    rows.append({"path": "filled-green-triangle.png", "caption": "", "concept": "green triangle", "style": "filled"})
    with (root / "captions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "caption", "concept", "style"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """Random weights for torchmetrics' Inception (the real ones cannot be downloaded here)."""
    from realrag_core.testing.inception import write_random_inception

    return write_random_inception(tmp_path_factory.mktemp("inception") / "pt_inception-random.pth")


@pytest.fixture
def run_outputs():
    """A function: what the stages wrote under an artifacts root, in a fixed order (manifests of generated_images
    and rag_images, negatives, results) plus the bytes of every image the manifests name, for comparing two runs."""
    import pyarrow.parquet as pq

    from realrag_core.storage.manifest import read_manifest

    def read(root: Path) -> dict:
        out, images = {}, {}
        for stage, order in (
            ("generated", ["prompt_id", "seed"]),
            ("rag", ["arm", "retriever_seed", "prompt_id", "seed"]),
        ):
            out[stage] = read_manifest(root / stage).sort_by([(c, "ascending") for c in order]).to_pylist()
            images.update({f"{stage}/{r['path']}": (root / stage / r["path"]).read_bytes() for r in out[stage]})
        out["negatives"] = pq.read_table(root / "negatives" / "reflective_negatives.parquet").to_pylist()
        out["results"] = pq.read_table(root / "reports" / "results.parquet").to_pylist()
        out["images"] = images
        return out

    return read


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-compatible server on localhost (moto's server mode, its own process) and the environment every
    client reads (pyarrow, Lance, boto3): a dict of AWS_* variables, also set in this process while tests run."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.skip("moto's server is not installed (pip install 'moto[server]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except urllib.error.HTTPError:  # it answers
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.3)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A new empty bucket on the S3 server: its name."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + f"-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
