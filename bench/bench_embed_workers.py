"""Benchmark: image_embeddings throughput with 0 vs N DataLoader workers, side by side in one run.

Embeds every image of the built source of a profile (all styles, all concepts: more than the table keeps,
to give the loader real work) into throw-away tables and prints images/s and the ratio.

    .venv/bin/python bench/bench_embed_workers.py [--config configs/demo.yaml] [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from realrag_core.clip.bundle import load_clip
from realrag_core.config.loading import load_config
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
from realrag_core.data.sources.registry import iter_records
from realrag_core.storage.store import ArtifactStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(args.config)
    clip = load_clip(ArtifactStore(cfg.artifacts_root).clip_dir, cfg.device)
    records = list(iter_records(cfg.source))
    scope = Scope(frozenset(r.style for r in records), {r.concept: "all" for r in records})
    results: dict[int, list[float]] = {0: [], args.workers: []}
    for _ in range(args.repeat):
        for workers in results:
            ecfg = cfg.embeddings.model_copy(update={"num_workers": workers})
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                report = embed_source(
                    cfg.source,
                    scope,
                    clip,
                    uri=tmp,
                    cfg=ecfg,
                    rejects_path=Path(tmp) / "rejects.parquet",
                    progress=False,
                )
                results[workers].append(report.inserted / (time.perf_counter() - start))
    base = statistics.median(results[0])
    for workers, rates in results.items():
        med = statistics.median(rates)
        print(
            f"workers={workers}: {med:7.1f} img/s (median of {len(rates)}; {report.inserted} images)  "
            f"ratio vs 0 workers: {med / base:.2f}x"
        )


if __name__ == "__main__":
    main()
