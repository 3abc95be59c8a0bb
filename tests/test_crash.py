"""Crash safety, each kernel killed with SIGKILL at random points, five times over, then run to the end.
Embedding: after every kill the table opens, holds no duplicate id and no half-written row (each row equals the
clean run's row of that id); the final run leaves exactly the clean run's rows. Generation: the manifest names
only complete, correct PNGs. Retriever training: readers always load a whole version, finished fits are resumed,
and the result equals an uninterrupted run's."""

import csv
import json
import os
import random
import shutil
import signal
import time

import numpy as np
import pytest
import torch

from realrag_core.clip.bundle import create_untrained, save_clip
from realrag_core.data.sources.synthetic import COLOURS, SHAPES, draw_concept
from realrag_core.testing.forked import ForkedChild

CHILD = """
import json, sys
from pathlib import Path
from realrag_core.clip.bundle import load_clip
from realrag_core.data.sources.caption_file import CaptionFileSourceConfig
from realrag_core.config.stages import EmbeddingsConfig
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
import lancedb  # loaded before "ready" (the kernel imports it on first use): the kills aim at the embedding
args = json.loads(sys.argv[1])
clip = load_clip(Path(args["clip"]))
source = CaptionFileSourceConfig(image_dir=Path(args["images"]), captions=Path(args["captions"]))
print("ready", flush=True)
report = embed_source(source, Scope(frozenset({"filled"}), args["split"]), clip, uri=args["db"],
                      cfg=EmbeddingsConfig(batch_size=4, num_workers=0), rejects_path=Path(args["rejects"]),
                      flush_rows=4, progress=False)
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
                rows.append(
                    {"path": name, "caption": f"{colour} {shape}", "concept": f"{colour} {shape}", "style": "filled"}
                )
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
    proc = ForkedChild(CHILD, [args], env)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    return proc


def rows_of(db):
    import lancedb

    table = lancedb.connect(str(db)).open_table("image_embeddings")  # readable after any kill
    return table.to_arrow().drop(["added_at"]).to_pylist()


def kill_until_five_mid_run(
    launch, observe, total: int, seconds: float, rng: random.Random, spread: float, restart
) -> list[int]:
    """Start the kernel (``launch``), SIGKILL it after a random share (up to ``spread``) of what is left of a run
    of ``seconds``, and count what it left (``observe``, which asserts it is whole), until five kills landed
    mid-run. What was written stays written; a run that finished before its kill (a loaded machine) is started
    over (``restart``). Returns the count after each kill."""
    counts, since_reset = [], []  # after each kill; those since the output was last started afresh
    while sum(0 < c < total for c in counts) < 5 and len(counts) < 20:
        remaining = 1 - (since_reset[-1] if since_reset else 0) / total
        proc = launch()
        time.sleep(rng.uniform(0.05, spread) * remaining * seconds)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        n = observe()
        assert not since_reset or n >= since_reset[-1], (since_reset, n)  # written stays written
        counts.append(n)
        since_reset.append(n)
        if n == total:
            restart()
            since_reset = []
    assert sum(0 < c < total for c in counts) >= 5, counts  # five kills landed mid-run
    return counts


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

    def observe() -> int:
        if not db.exists():  # killed before the table was created
            return 0
        rows = rows_of(db)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), "a kill left a duplicate id"
        for r in rows:  # every row whole: the clean run's row of that id
            assert r["path"] == clean[r["id"]]["path"] and r["caption"] == clean[r["id"]]["caption"]
            assert np.allclose(r["embedding"], clean[r["id"]]["embedding"], atol=1e-5)
        return len(rows)

    # somewhere in what is left of the run: between batches or in the middle of a commit
    counts = kill_until_five_mid_run(
        lambda: start(world, db, tmp_path),
        observe,
        world["n"],
        embed_seconds,
        random.Random(7),
        0.6,
        lambda: shutil.rmtree(db),
    )
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
from realrag_core.clip.bundle import load_clip
from realrag_core.config.loading import load_config
from realrag_core.generate.generation import generate_for_prompts
from realrag_core.generators.demo.diffusion import DemoDiffusionGenerator, TextTokens, build_unet
from realrag_core.data.prompts import Prompt
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
    from realrag_core.storage.manifest import read_manifest

    def run(out):
        args = json.dumps({"profile": str(smoke_config_file), "clip": world["clip"], "out": str(out)})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        proc = ForkedChild(GENERATE, [args], env)
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

    def observe() -> int:
        got = images(tmp_path / "gen")
        assert all(clean[key] == data for key, data in got.items())  # listed means complete and right
        return len(got)

    counts = kill_until_five_mid_run(
        lambda: run(tmp_path / "gen"),
        observe,
        80,
        seconds,
        random.Random(11),
        0.8,
        lambda: shutil.rmtree(tmp_path / "gen"),
    )
    proc = run(tmp_path / "gen")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert images(tmp_path / "gen") == clean
    print("images after each kill:", counts, "of 80")


def test_a_manifest_part_left_half_written_is_not_read(tmp_path):
    """What a kill in the middle of append_part leaves (a truncated temporary file) is invisible to readers; the
    next append and read work. (Found by the kill test above in a fresh-clone run.)"""
    import pyarrow as pa

    from realrag_core.storage.manifest import MANIFEST_DIR, append_part, read_manifest

    schema = pa.schema([("prompt_id", pa.string()), ("seed", pa.int64())])
    append_part(tmp_path, {"prompt_id": ["a"], "seed": [0]}, schema)
    (tmp_path / MANIFEST_DIR / ".part-0123.parquet.tmp").write_bytes(b"PAR1")  # a write cut short
    (tmp_path / MANIFEST_DIR / "part-4567.tmp").write_bytes(b"PAR1")  # the name older versions used
    append_part(tmp_path, {"prompt_id": ["b"], "seed": [1]}, schema)
    assert sorted(read_manifest(tmp_path)["prompt_id"].to_pylist()) == ["a", "b"]


TRAIN = """
import json, sys, time
from pathlib import Path
import numpy as np
import pyarrow as pa
from realrag_core.config.loading import load_config
from realrag_core.data.prompts import Prompt
from realrag_core.retriever.build import build_retriever
args = json.loads(sys.argv[1])
cfg = load_config(args["profile"])
cfg = cfg.model_copy(update={"retriever": cfg.retriever.model_copy(update={
    "steps": args["steps"], "batch_size": 8, "lr_grid": (1e-3, 3e-3, 1e-2), "seeds": (0, 1, 2)})})
concepts = sorted(set(args["split"]))
rng = np.random.default_rng(0)  # a fixed random table: the crash behaviour, not retrieval quality, is under test
ids = [f"{c}/{i}" for c in concepts for i in range(4)]
emb = rng.standard_normal((len(ids), args["dim"])).astype(np.float32)
rows = pa.table({"id": ids, "concept": [i.split("/")[0] for i in ids], "embedding": [e.tolist() for e in emb]})
prompts = [Prompt(f"p{i}", f"a {c}", c, "known" if i % 2 else "novel", "val" if i % 3 == 0 else "train", "a {concept}")
           for i, c in enumerate(concepts)]
out = Path(args["out"])
print("ready", flush=True)
start = time.perf_counter()
report = build_retriever(cfg, Path(args["clip"]), prompts, rows, table_version=1, negatives_rows=None, out_folder=out,
                         plot=out.parent / "loss.png", title="crash")
print("done", time.perf_counter() - start, report["resumed_fits"], flush=True)
"""


@pytest.mark.slow
def test_retriever_training_killed_at_random_points_resumes_and_never_leaves_a_broken_checkpoint(
    world, tmp_path, smoke_config_file
):
    """build_retriever (3 learning rates on validation, then 2 more seeds: 5 fits) killed mid-run: after each kill
    the retrievers a reader loads are whole, all of the previous version; finished fits are kept and the rerun
    resumes after them; the result equals an uninterrupted run's byte for byte."""
    from realrag_core.clip.bundle import WEIGHTS_NAME, load_clip
    from realrag_core.retriever.checkpoint import load_retrievers

    dim = load_clip(world["clip"]).model.text_projection.shape[1]

    def run(out, steps=40):
        args = json.dumps(
            {
                "profile": str(smoke_config_file),
                "clip": world["clip"],
                "split": world["split"],
                "out": str(out),
                "steps": steps,
                "dim": dim,
            }
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = ForkedChild(TRAIN, [args], env)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        return proc

    def finish(proc):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and out.startswith("done"), err[-2000:]
        return float(out.split()[1]), int(out.split()[2])

    def weights(out):  # what a reader sees: every seed's weights, loadable
        loaded = load_retrievers(out)
        assert [s for s, _, _ in loaded] == [0, 1, 2]
        folder = out if (out / "seed_0").exists() else out.with_name(out.name + ".old")
        return [(folder / f"seed_{s}" / WEIGHTS_NAME).read_bytes() for s in (0, 1, 2)]

    def fits_done(out):
        cache = out.with_name(out.name + ".fits")
        return len(list(cache.glob("*/fit.json"))) if cache.exists() else 0

    clean_dir, out = tmp_path / "clean" / "retriever", tmp_path / "killed" / "retriever"
    seconds, resumed = finish(run(clean_dir))
    assert resumed == 0
    clean = weights(clean_dir)
    finish(run(out, steps=5))  # the version in place when the kills begin
    previous = weights(out)
    assert previous != clean
    rng = random.Random(5)
    done, mid_run, attempts = [], 0, 0
    while (mid_run < 5 or not done or done[-1] < 1) and attempts < 20:  # and one fit to resume after
        attempts += 1
        proc = run(out)
        time.sleep(rng.uniform(0.05, 0.6) * (1 - (done[-1] if done else 0) / 5) * seconds)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        now = weights(out)
        assert now in (previous, clean)  # whole and of one version: never a mix, never half a file
        if now == clean:  # the build finished before the kill (a loaded machine): back to the previous version
            shutil.rmtree(out)
            finish(run(out, steps=5))
            assert weights(out) == previous
            done = []
            continue
        mid_run += 1
        assert not done or fits_done(out) >= done[-1], done  # finished fits stay finished
        done.append(fits_done(out))
    assert mid_run >= 5 and done and done[-1] >= 1, done
    _, resumed = finish(run(out))
    assert resumed == done[-1]  # continued after the last finished fit
    assert weights(out) == clean
    assert sorted(p.name for p in out.parent.iterdir()) == ["loss.png", "retriever"]  # no staging left
    print("fits finished after each kill:", done, "of 5; resumed", resumed)


def test_a_fit_is_reused_only_for_the_same_inputs_and_readers_fall_back_to_the_swapped_out_version(tmp_path, smoke_cfg):
    from realrag_core.clip.bundle import load_clip
    from realrag_core.retriever.fit_cache import FitCache
    from realrag_core.retriever.checkpoint import RETRIEVER_FILE, current_folder

    base = tmp_path / "base"
    model, *_ = create_untrained(base, smoke_cfg.clip.architecture, seed=0)
    save_clip(model, base)
    calls = []

    def fit():
        calls.append(1)
        clip = load_clip(base)
        with torch.no_grad():
            clip.model.text_projection.add_(0.5)  # a "trained" model differs from the base
        return clip, {"lr": 0.1, "seed": 3, "score": 0.25}

    cache = tmp_path / "ret.fits"
    first, run = FitCache(cache, base, smoke_cfg, "digest-a").get(0.1, 3, fit)
    again = FitCache(cache, base, smoke_cfg, "digest-a")
    model2, run2 = again.get(0.1, 3, fit)
    assert len(calls) == 1 and again.resumed == 1 and run2 == run
    assert torch.equal(model2.model.text_projection, first.model.text_projection)
    other = FitCache(cache, base, smoke_cfg, "digest-b")  # another table, prompts or settings: fitted again
    other.get(0.1, 3, fit)
    assert len(calls) == 2 and other.resumed == 0
    other.clear()
    assert not cache.exists()

    folder = tmp_path / "ret"  # killed between "folder -> folder.old" and "staging -> folder"
    old = tmp_path / "ret.old"
    old.mkdir()
    (old / RETRIEVER_FILE).write_text("{}")
    assert current_folder(folder) == old
    folder.mkdir()
    (folder / RETRIEVER_FILE).write_text("{}")
    assert current_folder(folder) == folder
