"""The FID reference set: real images of the evaluation concepts that the retrieval database does not hold.

A style held out of the database (the demo's reference artist, or a class-folder source's held-out share)
supplies them. Disjoint styles are not enough on real data (the same photo is often posted twice), so every
reference image is also compared with its nearest database image in the base CLIP's table: pairs at or above
the configured cosine are reported and the reference image is left out.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from realrag_core.clip.bundle import ClipBundle
from realrag_core.clip.demo_pretrain import load_images
from realrag_core.evaluate.metrics import near_duplicates
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.embed.table import search, table_model


def fid_reference_set(
    records: Iterable[ImageRecord],
    style: str,
    concepts_by_split: dict[str, set[str]],
    *,
    clip: ClipBundle | None = None,
    table=None,
    index_cfg=None,
    threshold: float | None = None,
) -> tuple[dict[str, list[tuple[str, object]]], dict]:
    """``{split: [(concept, image)]}`` of ``style``'s images of each split's concepts, and a report of what was
    left out (undecodable, near-duplicates of database images with the database id and cosine)."""
    wanted = {c: split for split, cs in concepts_by_split.items() for c in cs}
    chosen = [r for r in records if r.style == style and r.concept in wanted]
    images, kept = load_images(chosen)
    report = {
        "style": style,
        "listed": len(chosen),
        "undecodable": len(chosen) - len(kept),
        "undecodable_paths": sorted({str(r.path) for r in chosen} - {str(r.path) for r in kept}),
        "threshold": threshold,
        "near_duplicates": [],
    }
    if threshold is not None and images:
        if clip is None or table is None:
            raise ValueError("the near-duplicate check needs the base CLIP and the database table")
        model_id, _ = table_model(table)
        if model_id != clip.model_id:
            raise ValueError(
                f"the database table was embedded by {model_id}, not by the base CLIP {clip.model_id}: "
                "materialize image_embeddings first"
            )
        with torch.no_grad():
            emb = clip.embed_images(images).numpy()

        def nearest(vec):
            row = search(table, vec, 1, index_cfg, columns=("id",)).to_pylist()[0]
            return row["id"], 1.0 - row["_distance"]

        dups = near_duplicates(emb, nearest, threshold)
        report["near_duplicates"] = [
            {**d, "path": str(kept[d["index"]].path), "concept": kept[d["index"]].concept} for d in dups
        ]
        drop = {d["index"] for d in dups}
        images = [im for i, im in enumerate(images) if i not in drop]
        kept = [r for i, r in enumerate(kept) if i not in drop]
    out: dict[str, list] = {split: [] for split in concepts_by_split}
    for r, im in zip(kept, images):
        out[wanted[r.concept]].append((r.concept, im))
    report["kept"] = {split: len(v) for split, v in out.items()}
    return out, report


def concepts_without_reference(reference: dict[str, Sequence], concepts_by_split: dict[str, set[str]]) -> list[str]:
    have = {c for pairs in reference.values() for c, _ in pairs}
    return sorted(set().union(*concepts_by_split.values()) - have)
