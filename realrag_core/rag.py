"""Stage 5 kernel: retrieval-augmented generation for the evaluation prompts, one arm per retriever.

Arms: ``none`` (G(T), no retrieval), ``clip`` (top-1 by the zero-shot base CLIP), ``contrastive`` (top-1 by
the plain contrastive fine-tune), ``reflective`` (top-1 by the reflective retriever). Every arm uses the
same prompts and seeds. Retrieval goes through the LanceDB table (its index when there is one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
from PIL import Image
from tqdm.auto import tqdm

from .clip_backbone import ClipBundle
from .config import IndexConfig
from .generators.base import Generator
from .manifest import append_part, read_manifest, save_png
from .prompts import Prompt
from .vector_table import search

ARMS = ("none", "clip", "contrastive", "reflective")
SCHEMA = pa.schema(
    [("arm", pa.string()), ("prompt_id", pa.string()), ("prompt", pa.string()), ("concept", pa.string()),
     ("generator_split", pa.string()), ("seed", pa.int64()), ("path", pa.string()),
     ("retrieved_id", pa.string()), ("retrieved_path", pa.string()), ("retrieved_concept", pa.string()),
     ("retrieved_style", pa.string()), ("similarity", pa.float32()), ("retriever_id", pa.string()),
     ("generator_id", pa.string()), ("table_version", pa.int64())]
)  # fmt: skip


@dataclass(frozen=True)
class Retrieved:
    id: str
    path: str
    concept: str
    style: str
    similarity: float


def retrieve_top1(retriever: ClipBundle, prompts: Sequence[Prompt], table, index: IndexConfig) -> list[Retrieved]:
    text = retriever.embed_texts([p.prompt for p in prompts]).numpy()
    out = []
    for vec in text:
        row = search(table, vec, 1, index).to_pylist()[0]
        out.append(Retrieved(row["id"], row["path"], row["concept"], row["style"], 1.0 - float(row["_distance"])))
    return out


def generate_arms(
    generator: Generator, retrievers: dict[str, ClipBundle | None], prompts: Sequence[Prompt], seeds: Sequence[int],
    table, index: IndexConfig, folder: Path, batch_size: int = 64, progress: bool = True,
) -> dict:
    """Generate every (arm, prompt, seed) not yet in the manifest. Resumable batch by batch."""
    start = time.perf_counter()
    existing = read_manifest(folder)
    done = set()
    if existing is not None:
        done = {(a, p, s, g) for a, p, s, g in zip(existing["arm"].to_pylist(), existing["prompt_id"].to_pylist(),
                                                    existing["seed"].to_pylist(), existing["generator_id"].to_pylist())}  # fmt: skip
    work = []
    for arm, retriever in retrievers.items():
        hits = retrieve_top1(retriever, prompts, table, index) if retriever is not None else [None] * len(prompts)
        rid = retriever.model_id if retriever is not None else ""
        for p, hit in zip(prompts, hits):
            for s in seeds:
                if (arm, p.prompt_id, int(s), generator.generator_id) not in done:
                    work.append((arm, rid, p, hit, int(s)))
    bar = tqdm(total=len(work), desc="rag_images", unit="img", disable=not progress)
    for i in range(0, len(work), batch_size):
        chunk = work[i : i + batch_size]
        refs = [Image.open(hit.path).convert("RGB") if hit else None for _, _, _, hit, _ in chunk]
        images = generator.generate([p.prompt for _, _, p, _, _ in chunk], refs, [s for *_, s in chunk])
        rows = {f.name: [] for f in SCHEMA}
        for (arm, rid, p, hit, s), img in zip(chunk, images):
            rel = Path("images") / arm / p.prompt_id / f"{s}.png"
            save_png(img, folder / rel)
            values = {"arm": arm, "prompt_id": p.prompt_id, "prompt": p.prompt, "concept": p.concept,
                      "generator_split": p.generator_split, "seed": s, "path": str(rel),
                      "retrieved_id": hit.id if hit else None, "retrieved_path": hit.path if hit else None,
                      "retrieved_concept": hit.concept if hit else None, "retrieved_style": hit.style if hit else None,
                      "similarity": hit.similarity if hit else None, "retriever_id": rid,
                      "generator_id": generator.generator_id, "table_version": table.version}  # fmt: skip
            for k, v in values.items():
                rows[k].append(v)
        append_part(folder, rows, SCHEMA)
        bar.update(len(chunk))
    bar.close()
    return {"generated": len(work), "seconds": round(time.perf_counter() - start, 2)}
