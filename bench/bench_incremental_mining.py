"""Benchmark: reflective_negatives re-mined in full vs incrementally after the database grew, side by side.

Uses the profile's generated-image embeddings and embedding table (after README command 1). The table is split
into an "old" part (the previous mining) and an "added" part of the given share; both ways mine the same
negatives (checked), and the script prints seconds, compared pairs and the ratio. A synthetic table of
``--rows`` random unit vectors can stand in for a large database.

    .venv/bin/python bench/bench_incremental_mining.py [--config configs/demo.yaml] [--added 0.05] [--rows 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from realrag_core.config import load_config
from realrag_core.manifest import read_manifest
from realrag_core.mining import mine_incremental, mine_negatives
from realrag_core.store import ArtifactStore
from realrag_core.vector_table import VECTOR_COLUMN, open_table_readonly, read_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--added", type=float, default=0.05, help="share of the table added since the last mining")
    parser.add_argument("--rows", type=int, default=0, help="pad the table with this many random rows (a large database)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config)
    store = ArtifactStore(cfg.artifacts_root)
    manifest = read_manifest(store.generated_dir)
    generated = np.stack(manifest["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    gen_ids, gen_c = manifest["image_id"].to_pylist(), manifest["concept"].to_pylist()
    rows = read_rows(open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name))
    table = np.stack(rows[VECTOR_COLUMN].to_numpy(zero_copy_only=False)).astype(np.float32)
    ids, concepts = rows["id"].to_pylist(), rows["concept"].to_pylist()
    if args.rows:
        rng = np.random.default_rng(0)
        extra = rng.standard_normal((args.rows, table.shape[1])).astype(np.float32)
        table = np.concatenate([table, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
        ids += [f"pad{i}" for i in range(args.rows)]
        concepts += [f"pad-concept-{i % 1000}" for i in range(args.rows)]
    order = np.random.default_rng(1).permutation(len(ids))
    old = np.sort(order[: int(len(ids) * (1 - args.added))])
    k, policy = cfg.mining.k, cfg.mining.policy
    first = mine_negatives(generated, gen_c, table[old], [concepts[j] for j in old], k, policy)
    previous = {g: [(ids[old[j]], float(s)) for j, s in zip(first.indices[i], first.similarities[i])]
                for i, g in enumerate(gen_ids)}  # fmt: skip
    old_ids = {ids[j] for j in old}
    timings = {"full": [], "incremental": []}
    for _ in range(args.repeat):
        start = time.perf_counter()
        full = mine_negatives(generated, gen_c, table, concepts, k, policy)
        timings["full"].append(time.perf_counter() - start)
        start = time.perf_counter()
        inc, stats = mine_incremental(generated, gen_ids, gen_c, table, ids, concepts, previous, old_ids, k, policy)
        timings["incremental"].append(time.perf_counter() - start)
    assert np.array_equal(full.indices, inc.indices), "incremental and full re-mining disagree"
    f, i = min(timings["full"]), min(timings["incremental"])
    print(f"table {len(ids)} rows ({len(ids) - len(old)} added = {args.added:.0%}), {len(gen_ids)} generated images, k={k}")
    print(f"full re-mine        {f * 1000:8.1f} ms   compared pairs {len(gen_ids) * len(ids):,}")
    print(f"incremental re-mine {i * 1000:8.1f} ms   compared pairs {stats['compared_pairs']:,} "
          f"({stats['full_search_images']} images searched in full)")
    print(f"incremental / full: time {i / f:.3f}, pairs {stats['compared_pairs'] / (len(gen_ids) * len(ids)):.3f} (same negatives)")


if __name__ == "__main__":
    main()
