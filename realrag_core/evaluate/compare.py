"""One table over several runs: results keyed by (dataset, generator, encoder).

Each profile keeps its own artifacts root, so an SDXL run and a Flux run (or a ViT-B-32 and a ViT-L-14
retriever base) coexist; profiles that differ only in the generator can share one embedding table
(``embeddings.table_uri``), which is keyed by the encoder's model id. ``realrag compare a.yaml b.yaml`` reads
each run's ``reports/`` and writes one Parquet and one Markdown table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from realrag_core.config.loading import load_config
from realrag_core.config.tree import RealRagConfig
from realrag_core.storage.sync import artifact_sync
from realrag_core.data.sources.registry import dataset_name as source_dataset_name
from realrag_core.rag.retrieve import ARMS
from realrag_core.storage.store import ArtifactStore

METRICS = ("concept_acc", "retrieval_acc", "clip_t", "clip_i", "fid", "kid", "fid_judge", "kid_judge")


def dataset_name(cfg: RealRagConfig) -> str:
    """hf_dataset: its name; class_folders: the root folder's name; caption_file: the captions file's folder (each
    source kind says)."""
    return source_dataset_name(cfg.source)


def run_rows(cfg: RealRagConfig) -> list[dict]:
    """The run's result rows with its (dataset, generator, encoder) key; FileNotFoundError when it has none."""
    sync = artifact_sync(cfg)
    if sync is not None:  # artifacts on object storage: their reports first
        sync.pull(("reports/",))
    store = ArtifactStore(cfg.artifacts_root)
    fid = store.read_report("fid")
    if not fid:
        raise FileNotFoundError(f"profile {cfg.name!r} has no results in {store.reports_dir}: materialize fid first")
    generator = (store.read_report("generator") or {}).get("generator_id", "?")
    encoder = (store.read_report("clip_backbone") or {}).get("model_id", "?")
    key = {"profile": cfg.name, "dataset": dataset_name(cfg), "generator": generator, "encoder": encoder}
    return [{**key, "protocol": "unseen_concepts", **r} for r in fid["results"] if r["metric"] in METRICS]


def compare(configs: Sequence[str | Path]) -> list[dict]:
    rows = []
    for path in configs:
        rows += run_rows(load_config(path))
    return rows


def compare_markdown(rows: list[dict]) -> str:
    metrics = [m for m in METRICS if any(r["metric"] == m for r in rows)]
    index = {(r["profile"], r["protocol"], r["split"], r["arm"], r["metric"]): r for r in rows}
    keys = sorted({(r["profile"], r["dataset"], r["generator"], r["encoder"]) for r in rows})
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    lines = [
        "| dataset | generator | encoder | protocol | split | arm | " + " | ".join(metrics) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(metrics),
    ]
    for profile, dataset, generator, encoder in keys:
        for protocol in protocols:
            for split in ("known", "novel"):
                for arm in ARMS:
                    cells = []
                    for m in metrics:
                        r = index.get((profile, protocol, split, arm, m))
                        cells.append("-" if r is None else f"{r['value']:.3f} (n={r['n']})")
                    if any(c != "-" for c in cells):
                        lines.append(
                            f"| {dataset} | {generator} | {encoder} | {protocol} | {split} | {arm} | "
                            + " | ".join(cells)
                            + " |"
                        )
    return "\n".join(lines) + "\n"


def write_comparison(rows: list[dict], out: Path) -> dict[str, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    parquet = out.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    md = out.with_suffix(".md")
    md.write_text(compare_markdown(rows))
    return {"parquet": parquet, "md": md}
