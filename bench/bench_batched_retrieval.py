"""Benchmark: retrieval for many prompts, one LanceDB query per prompt against the batched search
(`embed.table.search_batch`, what `rag_images` and `realrag generate` use), side by side in one run.

The table: ``--rows`` rows in the project's embedding schema, vectors drawn from the distribution bench_ann.py fits
to the demo world's real image embeddings (README command 1 makes them), lifted to ``--dim``. Queries:
``--prompts`` vectors of the same distribution. The tables `image_embeddings` leaves: below
`embeddings.index.threshold_rows` (exact search; the batch is one blocked matrix product) and above it, once per
``--index-types`` (the project's default IVF_HNSW_SQ first, then IVF_PQ; the batch is LanceDB's multi-vector query
for the index's candidates, re-ranked in one pass). On the exact table the per-prompt loop is timed on the first
``--loop-prompts`` prompts and its rate scaled to all of them (10,000 exact queries take 40 min on 2 cores); on
an indexed table it runs every prompt. Both routes must return the same top-1 ids wherever the loop ran. On an
indexed table the bench also times LanceDB's multi-vector query alone: LanceDB runs one ANN search per vector, so
the loop's time over that one is the most any batch through the index can gain. Target: >= 10x.
Writes bench/results/batched_retrieval.json.

    .venv/bin/python bench/bench_batched_retrieval.py [--rows 100000] [--prompts 10000] [--dim 512]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from _results import write
from bench_ann import fitted_rows_and_queries
from realrag_core.config.stages import IndexConfig
from realrag_core.embed.table import (
    VECTOR_COLUMN,
    ensure_index,
    open_embedding_table,
    search,
    search_batch,
    table_schema,
)


def build_table(folder: str, vectors: np.ndarray, cfg: IndexConfig):
    table, _ = open_embedding_table(folder, "bench", vectors.shape[1], "bench-model")
    n = len(vectors)
    for start in range(0, n, 50_000):
        part = vectors[start : start + 50_000]
        ids = [f"r{i}" for i in range(start, start + len(part))]
        data = {
            "id": ids,
            "path": [f"/data/{i}.jpg" for i in ids],
            "concept": [f"c{int(i[1:]) % 1000}" for i in ids],
            "style": ["photo"] * len(part),
        }
        schema = table_schema(vectors.shape[1], "bench-model")
        for field in schema:
            if field.name not in data and field.name != VECTOR_COLUMN:
                data[field.name] = pa.nulls(len(part), field.type)
        data[VECTOR_COLUMN] = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), vectors.shape[1])
        table.add(pa.Table.from_pydict({f.name: data[f.name] for f in schema}, schema=schema))
    start = time.perf_counter()
    state = ensure_index(table, cfg)
    return table, state, time.perf_counter() - start


def lancedb_ann_s(table, queries: np.ndarray, k: int, cfg: IndexConfig, chunk: int = 1024) -> float:
    """Seconds LanceDB's multi-vector query alone takes to hand over the index's candidates of every query (what
    `indexed_search_batch` asks it for, without the re-rank or reading any row): LanceDB plans and runs one ANN
    search per vector, so this bounds what any batched route through its index can gain."""
    start = time.perf_counter()
    for i in range(0, len(queries), chunk):
        q = table.search(list(queries[i : i + chunk]), vector_column_name=VECTOR_COLUMN).distance_type("cosine")
        q.limit(k * cfg.refine_factor).select(["_distance"]).with_row_id(True).nprobes(cfg.nprobes).to_arrow()
    return time.perf_counter() - start


def compare(
    table, queries: np.ndarray, loop_n: int, cfg: IndexConfig, label: str, *, indexed: bool, warm: int = 20
) -> dict:
    for q in queries[-warm:]:  # both routes time a warm index cache (the batch runs after the loop anyway)
        search(table, q, 1, cfg)
    start = time.perf_counter()
    loop_ids = [search(table, q, 1, cfg)["id"][0].as_py() for q in tqdm(queries[:loop_n], desc=f"{label}: loop")]
    loop_s = (time.perf_counter() - start) / loop_n * len(queries)
    start = time.perf_counter()
    batched = search_batch(table, queries, 1, cfg)
    batch_s = time.perf_counter() - start
    same = float(np.mean([b[0]["id"] == a for b, a in zip(batched[:loop_n], loop_ids)]))
    out = {
        "loop_prompts": loop_n,
        "loop_s" if loop_n == len(queries) else "loop_s_scaled": round(loop_s, 1),
        "batched_s": round(batch_s, 2),
        "speedup": round(loop_s / batch_s, 1),
        "top1_agreement_on_loop_prompts": same,
    }
    if indexed:
        ann_s = lancedb_ann_s(table, queries, 1, cfg)
        out |= {"lancedb_ann_s": round(ann_s, 2), "ceiling_loop_over_lancedb_ann": round(loop_s / ann_s, 1)}
    print(label, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None, help="the profile whose table the distribution is fitted to")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--loop-prompts", type=int, default=500, help="exact table: prompts the loop times")
    parser.add_argument(
        "--indexed-loop-prompts", type=int, default=None, help="indexed tables: prompts the loop times (all)"
    )
    parser.add_argument("--index-types", default="IVF_HNSW_SQ,IVF_PQ", help="the first is the project's default")
    args = parser.parse_args()
    data, queries, fitted = fitted_rows_and_queries(args.config, args.dim, args.rows, args.prompts)
    loop_n = min(args.loop_prompts, args.prompts)
    indexed_loop_n = min(args.indexed_loop_prompts or args.prompts, args.prompts)
    kinds = args.index_types.split(",")
    measured = {"fitted": fitted}
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        exact_cfg = IndexConfig(threshold_rows=args.rows + 1)
        table, state, _ = build_table(f"{tmp}/exact", data, exact_cfg)
        assert not state.indexed
        measured["exact"] = compare(
            table, queries, loop_n, exact_cfg, "exact (below the index threshold)", indexed=False
        )
        ratios["exact table: batched vs one query per prompt"] = (measured["exact"]["speedup"], ">= 10")
        ratios["exact table: top-1 agreement on the looped prompts"] = (
            measured["exact"]["top1_agreement_on_loop_prompts"],
            ">= 1",
        )
        for kind in kinds:
            index_cfg = IndexConfig(threshold_rows=min(50_000, args.rows), type=kind)  # otherwise the defaults
            table, state, build_s = build_table(f"{tmp}/{kind}", data, index_cfg)
            assert state.indexed
            got = compare(table, queries, indexed_loop_n, index_cfg, f"{kind} index", indexed=True)
            measured[kind] = {"index_build_s": round(build_s, 1), **got}
            ratios[f"{kind} table: batched vs one query per prompt"] = (got["speedup"], ">= 10")
            ratios[f"{kind} table: LanceDB's multi-vector ANN alone vs one query per prompt (ceiling)"] = (
                got["ceiling_loop_over_lancedb_ann"],
                None,
            )
            ratios[f"{kind} table: top-1 agreement, batched vs loop"] = (got["top1_agreement_on_loop_prompts"], ">= 1")
            shutil.rmtree(f"{tmp}/{kind}", ignore_errors=True)
    write(
        "batched_retrieval",
        "Batched retrieval vs one query per prompt",
        {
            "rows": args.rows,
            "prompts": args.prompts,
            "dim": args.dim,
            "loop_prompts": loop_n,
            "indexed_loop_prompts": indexed_loop_n,
            "index_types": kinds,
        },
        measured,
        ratios,
        notes="exact table: the loop's time is its rate on the first loop_prompts prompts, scaled to all of them; "
        "indexed tables: the loop runs indexed_loop_prompts prompts (scaled if fewer). Ceiling: the loop's time over "
        "LanceDB's own multi-vector query for the index's candidates (one ANN search per vector inside LanceDB)",
    )


if __name__ == "__main__":
    main()
