"""Crash safety: the embedding run killed with SIGKILL at random points, five times over, then run to the end. After
every kill the table opens, holds no duplicate id and no half-written row (each row equals the clean run's row
of that id); the final run leaves exactly the clean run's rows."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from realrag_core.clip_backbone import create_untrained, save_clip
from realrag_core.synthetic_world import COLOURS, SHAPES, draw_concept

CHILD = """
import json, sys
from pathlib import Path
from realrag_core.clip_backbone import load_clip
from realrag_core.config import CaptionFileSourceConfig, EmbeddingsConfig
from realrag_core.embed_images import embed_source
from realrag_core.embed_reader import Scope
args = json.loads(sys.argv[1])
clip = load_clip(Path(args["clip"]))
source = CaptionFileSourceConfig(image_dir=Path(args["images"]), captions=Path(args["captions"]))
print("ready", flush=True)
report = embed_source(source, Scope(frozenset({"filled"}), args["split"]), clip, args["db"],
                      EmbeddingsConfig(batch_size=4, num_workers=0), Path(args["rejects"]), flush_rows=4, progress=False)
print("done", report.rows, report.seconds, flush=True)
"""


@pytest.fixture
def world(tmp_path, smoke_cfg):
    images = tmp_path / "images"
    images.mkdir()
    rows, split = [], {}
    for colour in sorted(COLOURS)[:8]:
        for shape in sorted(SHAPES)[:6]:
            for size in (24, 28, 32, 36):
                name = f"{colour}-{shape}-{size}.png"
                draw_concept(colour, shape, "filled", size).save(images / name)
                rows.append({"path": name, "caption": f"{colour} {shape}", "concept": f"{colour} {shape}", "style": "filled"})
                split[f"{colour} {shape}"] = "known"
    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    clip = tmp_path / "clip"
    model, *_ = create_untrained(clip, smoke_cfg.clip.architecture, seed=0)
    save_clip(model, clip)
    return {"clip": str(clip), "images": str(images), "captions": str(captions), "split": split, "n": len(rows)}


def start(world, db, tmp_path):
    args = json.dumps({**world, "db": str(db), "rejects": str(tmp_path / "rejects.parquet")})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    return proc


def rows_of(db):
    import lancedb

    table = lancedb.connect(str(db)).open_table("image_embeddings")  # readable after any kill
    return table.to_arrow().drop(["added_at"]).to_pylist()


@pytest.mark.slow
def test_embedding_killed_at_five_random_points_resumes_to_the_clean_table(world, tmp_path):
    clean_db = tmp_path / "clean"
    proc = start(world, clean_db, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and out.startswith("done"), err[-2000:]
    embed_seconds = float(out.split()[2])  # embed_source's own time: a commit every 4 rows
    clean = {r["id"]: r for r in rows_of(clean_db)}
    assert len(clean) == world["n"]
    db = tmp_path / "db"
    rng = random.Random(7)
    counts = []
    while sum(0 < c < world["n"] for c in counts) < 5 and len(counts) < 12:
        remaining = 1 - (counts[-1] if counts else 0) / world["n"]
        proc = start(world, db, tmp_path)
        # somewhere in what is left of the run: between batches or in the middle of a commit
        time.sleep(rng.uniform(0.05, 0.8) * remaining * embed_seconds)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if not db.exists():  # killed before the table was created
            counts.append(0)
            continue
        rows = rows_of(db)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), "a kill left a duplicate id"
        for r in rows:  # every row whole: the clean run's row of that id
            assert r["path"] == clean[r["id"]]["path"] and r["caption"] == clean[r["id"]]["caption"]
            assert np.allclose(r["embedding"], clean[r["id"]]["embedding"], atol=1e-5)
        counts.append(len(rows))
    assert counts == sorted(counts)  # what was written stays written
    assert sum(0 < c < world["n"] for c in counts) >= 5, counts  # five kills landed mid-run
    proc = start(world, db, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    final = {r["id"]: r for r in rows_of(db)}
    assert final.keys() == clean.keys()
    assert all(np.allclose(final[i]["embedding"], clean[i]["embedding"], atol=1e-5) for i in clean)
    print("rows after each kill:", counts, "of", world["n"])


GENERATE = """
import json, sys
from pathlib import Path
import torch
from realrag_core.clip_backbone import load_clip
from realrag_core.config import load_config
from realrag_core.generation import generate_for_prompts
from realrag_core.generators.demo_diffusion import DemoDiffusionGenerator, TextTokens, build_unet
from realrag_core.prompts import Prompt
args = json.loads(sys.argv[1])
cfg = load_config(args["profile"])
clip = load_clip(Path(args["clip"]))
text = TextTokens(clip)
torch.manual_seed(0)  # an untrained UNet: the crash behaviour, not the pictures, is under test
unet = build_unet(cfg.generator.unet, text.width, text.dim)
gen = DemoDiffusionGenerator(unet, text, cfg.generator.unet, "crash-test", 4, 2.0, 4)
prompts = [Prompt(f"p{i:03d}", f"a picture number {i}", f"c{i}", "known", "train", "a {concept}") for i in range(40)]
print("ready", flush=True)
report = generate_for_prompts(gen, clip, prompts, [0, 1], Path(args["out"]), batch_size=4, progress=False)
print("done", report.seconds, flush=True)
"""


@pytest.mark.slow
def test_generation_killed_at_random_points_resumes_to_the_clean_images(world, tmp_path, smoke_config_file):
    """generated_images' kernel killed mid-run: after each kill the manifest reads whole and names only PNGs that
    are complete and equal to a clean run's; the rerun finishes the clean run's images, byte for byte."""
    from realrag_core.manifest import read_manifest

    def run(out):
        args = json.dumps({"profile": str(smoke_config_file), "clip": world["clip"], "out": str(out)})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        proc = subprocess.Popen([sys.executable, "-c", GENERATE, args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        return proc

    def images(out):
        manifest = read_manifest(out)
        if manifest is None:
            return {}
        rows = manifest.to_pylist()
        keys = [(r["prompt_id"], r["seed"]) for r in rows]
        assert len(keys) == len(set(keys)), "a kill left an image twice in the manifest"
        return {key: (out / r["path"]).read_bytes() for key, r in zip(keys, rows)}

    proc = run(tmp_path / "clean")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    seconds = float(out.split()[1])
    clean = images(tmp_path / "clean")
    assert len(clean) == 80
    rng = random.Random(11)
    counts = []
    while sum(0 < c < 80 for c in counts) < 5 and len(counts) < 12:
        remaining = 1 - (counts[-1] if counts else 0) / 80
        proc = run(tmp_path / "gen")
        time.sleep(rng.uniform(0.05, 0.8) * remaining * seconds)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        got = images(tmp_path / "gen")
        assert all(clean[key] == data for key, data in got.items())  # listed means complete and right
        counts.append(len(got))
    assert counts == sorted(counts) and sum(0 < c < 80 for c in counts) >= 5, counts
    proc = run(tmp_path / "gen")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert images(tmp_path / "gen") == clean
    print("images after each kill:", counts, "of 80")


def test_a_manifest_part_left_half_written_is_not_read(tmp_path):
    """What a kill in the middle of append_part leaves (a truncated temporary file) is invisible to readers; the
    next append and read work. (Found by the kill test above in a fresh-clone run.)"""
    import pyarrow as pa

    from realrag_core.manifest import MANIFEST_DIR, append_part, read_manifest

    schema = pa.schema([("prompt_id", pa.string()), ("seed", pa.int64())])
    append_part(tmp_path, {"prompt_id": ["a"], "seed": [0]}, schema)
    (tmp_path / MANIFEST_DIR / ".part-0123.parquet.tmp").write_bytes(b"PAR1")  # a write cut short
    (tmp_path / MANIFEST_DIR / "part-4567.tmp").write_bytes(b"PAR1")  # the name older versions used
    append_part(tmp_path, {"prompt_id": ["b"], "seed": [1]}, schema)
    assert sorted(read_manifest(tmp_path)["prompt_id"].to_pylist()) == ["a", "b"]
