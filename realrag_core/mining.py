"""Stage 3 kernel: reflective negatives. For each generated image G(T), the k real database images nearest
to it by cosine similarity: what the generator already knows.

Policies: ``exclude_concept`` (default) masks every image of the prompt's own concept, since those are
positives (like in-batch false negatives); ``exclude_positive`` is the paper-literal reading, excluding only
the positive image itself, which the training step drops pair by pair. Computed as batched matrix products
over chunks of the table, never a per-query loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

POLICIES = ("exclude_concept", "exclude_positive")


@dataclass
class Negatives:
    indices: np.ndarray  # [G, k] row indices into the table arrays
    similarities: np.ndarray  # [G, k], descending


def mine_negatives(
    generated: np.ndarray,  # [G, d] normalised
    generated_concepts: Sequence[str],
    table: np.ndarray,  # [N, d] normalised
    table_concepts: Sequence[str],
    k: int,
    policy: str = "exclude_concept",
    chunk_rows: int = 65536,
) -> Negatives:
    if policy not in POLICIES:
        raise ValueError(f"unknown negative policy {policy!r}; expected one of {POLICIES}")
    g = torch.from_numpy(np.ascontiguousarray(generated, dtype=np.float32))
    concept_ids = {c: i for i, c in enumerate(sorted(set(table_concepts) | set(generated_concepts)))}
    gc = torch.tensor([concept_ids[c] for c in generated_concepts])
    tc_all = torch.tensor([concept_ids[c] for c in table_concepts])
    best_s = torch.full((len(g), k), float("-inf"))
    best_i = torch.full((len(g), k), -1, dtype=torch.long)
    for start in range(0, len(table), chunk_rows):
        block = torch.from_numpy(np.ascontiguousarray(table[start : start + chunk_rows], dtype=np.float32))
        sims = g @ block.T  # [G, chunk]
        if policy == "exclude_concept":
            sims = sims.masked_fill(gc[:, None] == tc_all[None, start : start + len(block)], float("-inf"))
        idx = torch.arange(start, start + len(block)).expand(len(g), -1)
        cand_s = torch.cat([best_s, sims], dim=1)
        cand_i = torch.cat([best_i, idx], dim=1)
        top = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
        best_s, best_i = top.values, torch.gather(cand_i, 1, top.indices)
    if torch.isinf(best_s).any():  # a masked (same-concept) or missing candidate reached the top k
        raise ValueError(f"fewer than k={k} candidate negatives outside the prompt's concept")
    return Negatives(best_i.numpy(), best_s.numpy())


def negatives_table(manifest, table_rows, negatives: Negatives, table_version: int, policy: str):
    """One row per (generated image, rank): Parquet-ready, with everything a later stage must check."""
    import pyarrow as pa

    k = negatives.indices.shape[1]
    ids = table_rows["id"].to_numpy(zero_copy_only=False)
    concepts = table_rows["concept"].to_numpy(zero_copy_only=False)
    styles = table_rows["style"].to_numpy(zero_copy_only=False)
    flat = negatives.indices.reshape(-1)

    def rep(column):
        return [v for v in manifest[column].to_pylist() for _ in range(k)]

    return pa.table({
        "prompt_id": rep("prompt_id"),
        "concept": rep("concept"),
        "generated_image_id": rep("image_id"),
        "seed": rep("seed"),
        "rank": [r for _ in range(len(manifest)) for r in range(1, k + 1)],
        "negative_id": ids[flat].tolist(),
        "negative_concept": concepts[flat].tolist(),
        "negative_style": styles[flat].tolist(),
        "similarity": negatives.similarities.reshape(-1).astype("float32"),
        "table_version": [table_version] * len(flat),
        "generator_id": rep("generator_id"),
        "encoder_id": rep("encoder_id"),
        "policy": [policy] * len(flat),
    })  # fmt: skip
