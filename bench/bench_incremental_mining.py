"""Benchmark: reflective_negatives re-mined incrementally vs in full after the database grew, side by side.

A table of ``--rows`` unit vectors (dim ``--dim``, ``--concepts`` concepts) is mined once without its last
``--added`` share (the previous mining), then the whole table is mined both ways for ``--queries`` generated
images; the negatives must be identical. Prints seconds, compared pairs and the ratio (target <= 0.02 at +1% of
1M rows) and writes bench/results/incremental_mining.json.

    .venv/bin/python bench/bench_incremental_mining.py [--rows 1000000] [--added 0.01] [--queries 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from _results import peak_rss_mb, write
from realrag_core.mining.reflective import mine_incremental, mine_negatives


def unit(rng, n, dim):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--added", type=float, default=0.01, help="share of the table added since the last mining")
    parser.add_argument("--queries", type=int, default=10_000, help="generated images")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--concepts", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=3, help="incremental runs (the best counts); the full one runs once"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = unit(rng, args.rows, args.dim)
    generated = unit(rng, args.queries, args.dim)
    ids = pa.array([f"row{i:08d}" for i in range(args.rows)])
    concepts = pa.array([f"concept{i % args.concepts}" for i in range(args.rows)])
    gen_ids = [f"gen{i:06d}" for i in range(args.queries)]
    gen_c = pa.array([f"concept{c}" for c in rng.integers(0, args.concepts, args.queries)])
    n_old = int(args.rows * (1 - args.added))
    print(f"previous mining over {n_old:,} rows ...", flush=True)
    first = mine_negatives(generated, gen_c, table[:n_old], concepts[:n_old], args.k)
    old_ids = ids[:n_old]
    previous = {
        g: [(old_ids[int(j)].as_py(), float(s)) for j, s in zip(first.indices[i], first.similarities[i])]
        for i, g in enumerate(gen_ids)
    }
    print(f"full re-mine over {args.rows:,} rows ...", flush=True)
    start = time.perf_counter()
    full = mine_negatives(generated, gen_c, table, concepts, args.k)
    full_s = time.perf_counter() - start
    inc_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        inc, stats = mine_incremental(
            generated,
            gen_ids,
            gen_c,
            table=table,
            table_ids=ids,
            table_concepts=concepts,
            previous=previous,
            previous_table_ids=old_ids,
            k=args.k,
        )
        inc_times.append(time.perf_counter() - start)
    same = np.array_equal(full.indices, inc.indices) and np.allclose(full.similarities, inc.similarities, atol=1e-6)
    assert same, "incremental and full re-mining disagree"
    inc_s = min(inc_times)
    pairs_full = args.queries * args.rows
    print(
        f"table {args.rows:,} rows (+{args.rows - n_old:,} = {args.added:.1%}), {args.queries:,} generated images, "
        f"dim {args.dim}, k={args.k}"
    )
    print(f"full re-mine        {full_s:9.3f} s   compared pairs {pairs_full:,}")
    print(f"incremental re-mine {inc_s:9.3f} s   compared pairs {stats['compared_pairs']:,}")
    write(
        "incremental_mining",
        "Incremental re-mine vs full",
        {k: getattr(args, k) for k in ("rows", "added", "queries", "dim", "concepts", "k", "repeat")},
        {
            "full_seconds": round(full_s, 3),
            "incremental_seconds": round(inc_s, 3),
            "incremental_runs": [round(t, 3) for t in inc_times],
            "compared_pairs_full": pairs_full,
            "compared_pairs_incremental": stats["compared_pairs"],
            "same_negatives": same,
            "peak_rss_mb": round(peak_rss_mb()),
        },
        {
            "time incremental / full": (inc_s / full_s, "<= 0.02"),
            "compared pairs incremental / full": (stats["compared_pairs"] / pairs_full, None),
        },
    )


if __name__ == "__main__":
    main()
