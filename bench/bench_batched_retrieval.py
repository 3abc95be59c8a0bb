"""Benchmark: retrieval for many prompts, one LanceDB query per prompt against the batched search
(`vector_table.search_batch`, what `rag_images` and `realrag generate` use), side by side in one run.

The table: ``--rows`` rows in the project's embedding schema, vectors drawn from the distribution bench_ann.py fits
to the demo world's real image embeddings (README command 1 makes them), lifted to ``--dim``. Queries:
``--prompts`` vectors of the same distribution. Two tables, as `image_embeddings` leaves them: below
`embeddings.index.threshold_rows` (exact search; the batch is one blocked matrix product) and above it (the
project's default IVF_HNSW_SQ index; the batch is LanceDB's multi-vector query). The per-prompt loop is timed on
the first ``--loop-prompts`` prompts and its rate scaled to all of them (a loop over 10,000 prompts of exact
search takes minutes on 2 cores); both routes must return the same top-1 ids there. Target: >= 10x.
Writes bench/results/batched_retrieval.json.

    .venv/bin/python bench/bench_batched_retrieval.py [--rows 100000] [--prompts 10000] [--dim 512]
"""

from __future__ import annotations

import argparse
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


def compare(table, queries: np.ndarray, loop_n: int, cfg: IndexConfig, label: str) -> dict:
    start = time.perf_counter()
    loop_ids = [search(table, q, 1, cfg)["id"][0].as_py() for q in tqdm(queries[:loop_n], desc=f"{label}: loop")]
    loop_s = (time.perf_counter() - start) / loop_n * len(queries)
    start = time.perf_counter()
    batched = search_batch(table, queries, 1, cfg)
    batch_s = time.perf_counter() - start
    same = float(np.mean([b[0]["id"] == a for b, a in zip(batched[:loop_n], loop_ids)]))
    out = {
        "loop_s_scaled": round(loop_s, 1),
        "batched_s": round(batch_s, 2),
        "speedup": round(loop_s / batch_s, 1),
        "top1_agreement_on_loop_prompts": same,
    }
    print(label, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None, help="the profile whose table the distribution is fitted to")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--loop-prompts", type=int, default=500)
    args = parser.parse_args()
    data, queries, fitted = fitted_rows_and_queries(args.config, args.dim, args.rows, args.prompts)
    loop_n = min(args.loop_prompts, args.prompts)
    measured = {"fitted": fitted}
    with tempfile.TemporaryDirectory() as tmp:
        exact_cfg = IndexConfig(threshold_rows=args.rows + 1)
        table, state, _ = build_table(f"{tmp}/exact", data, exact_cfg)
        assert not state.indexed
        measured["exact"] = compare(table, queries, loop_n, exact_cfg, "exact (below the index threshold)")
        index_cfg = IndexConfig(threshold_rows=min(50_000, args.rows))  # the project's default index
        table, state, build_s = build_table(f"{tmp}/indexed", data, index_cfg)
        assert state.indexed
        measured["indexed"] = {
            "index_build_s": round(build_s, 1),
            **compare(table, queries, loop_n, index_cfg, "IVF_HNSW_SQ index"),
        }
    ratios = {
        "exact table: batched vs one query per prompt": (measured["exact"]["speedup"], ">= 10"),
        "indexed table: batched vs one query per prompt": (measured["indexed"]["speedup"], ">= 10"),
        "exact table: top-1 agreement on the looped prompts": (
            measured["exact"]["top1_agreement_on_loop_prompts"],
            ">= 1",
        ),
    }
    write(
        "batched_retrieval",
        "Batched retrieval vs one query per prompt",
        {"rows": args.rows, "prompts": args.prompts, "dim": args.dim, "loop_prompts": loop_n},
        measured,
        ratios,
        notes="the loop's time is its rate on the first loop_prompts prompts, scaled to all of them",
    )


if __name__ == "__main__":
    main()
