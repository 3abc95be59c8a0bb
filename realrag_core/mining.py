"""Stage 3 kernel: reflective negatives. For each generated image G(T), the k real database images nearest
to it by cosine similarity: what the generator already knows.

Policies: ``exclude_concept`` (default) masks every image of the prompt's own concept, since those are
positives (like in-batch false negatives); ``exclude_positive`` is the paper-literal reading, excluding only
the positive image itself, which the training step drops pair by pair. Computed as batched matrix products
over chunks of the table, never a per-query loop.
"""

from __future__ import annotations

import hashlib
import json
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


def negatives_version(rows: Sequence[dict]) -> str:
    """A short digest of mined negatives' content (per generated image: each rank's negative and the table version
    it was mined on), so a retriever can record which negatives it trained on and a UI can tell them apart."""
    key = sorted((r["generated_image_id"], r["rank"], r["negative_id"], r["table_version"]) for r in rows)
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


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


@dataclass
class IncrementalPlan:
    """Which generated images can be updated from the added rows alone, and which need a full search."""

    reuse: list[int]  # generated-image positions whose previous k negatives all still exist
    full: list[int]  # no previous negatives, a different k/policy, or a previous negative was removed
    added_rows: list[int]  # table positions of rows the previous mining did not see


def plan_incremental(generated_ids: Sequence[str], previous: dict[str, list[tuple[str, float]]],
                     table_ids: Sequence[str], previous_table_ids: set[str], k: int) -> IncrementalPlan:  # fmt: skip
    """``previous[g]``: image g's previous negatives as (table id, similarity), best first, mined against the
    table whose ids were ``previous_table_ids``. Their top k over the old rows is exact, so the top k over the
    current table is the top k of (previous negatives, best k among the added rows), unless one of the previous
    negatives left the table (then that image is searched in full)."""
    current = set(table_ids)
    reuse, full = [], []
    for i, g in enumerate(generated_ids):
        negs = previous.get(g)
        if negs is not None and len(negs) == k and all(n in current for n, _ in negs):
            reuse.append(i)
        else:
            full.append(i)
    added = [j for j, t in enumerate(table_ids) if t not in previous_table_ids]
    return IncrementalPlan(reuse, full, added)


def mine_incremental(
    generated: np.ndarray,
    generated_ids: Sequence[str],
    generated_concepts: Sequence[str],
    table: np.ndarray,
    table_ids: Sequence[str],
    table_concepts: Sequence[str],
    previous: dict[str, list[tuple[str, float]]],
    previous_table_ids: set[str],
    k: int,
    policy: str = "exclude_concept",
    chunk_rows: int = 65536,
) -> tuple[Negatives, dict]:
    """The same negatives as ``mine_negatives`` over the whole table, computed from the previous result and the
    added rows; cost grows with the added rows (plus full searches only for images that lost a negative)."""
    plan = plan_incremental(generated_ids, previous, table_ids, previous_table_ids, k)
    position = {t: j for j, t in enumerate(table_ids)}
    indices = np.zeros((len(generated_ids), k), dtype=np.int64)
    sims = np.zeros((len(generated_ids), k), dtype=np.float32)
    if plan.full:
        done = mine_negatives(generated[plan.full], [generated_concepts[i] for i in plan.full], table, table_concepts,
                              k, policy, chunk_rows)  # fmt: skip
        indices[plan.full], sims[plan.full] = done.indices, done.similarities
    if plan.reuse:
        rows = plan.reuse
        old_i = np.array([[position[n] for n, _ in previous[generated_ids[i]]] for i in rows])
        old_s = np.array([[s for _, s in previous[generated_ids[i]]] for i in rows], dtype=np.float32)
        if plan.added_rows:
            added = np.array(plan.added_rows)
            # the added rows may hold fewer than k candidates outside a concept: pad with -inf, never an error
            g = torch.from_numpy(np.ascontiguousarray(generated[rows], dtype=np.float32))
            block = torch.from_numpy(np.ascontiguousarray(table[added], dtype=np.float32))
            s = g @ block.T
            if policy == "exclude_concept":
                gc = np.array([generated_concepts[i] for i in rows])[:, None]
                tc = np.array([table_concepts[j] for j in added])[None, :]
                s = s.masked_fill(torch.from_numpy(gc == tc), float("-inf"))
            cand_s = torch.cat([torch.from_numpy(old_s), s], dim=1)
            cand_i = torch.cat([torch.from_numpy(old_i), torch.from_numpy(added).expand(len(rows), -1)], dim=1)
            top = cand_s.topk(k, dim=1)
            old_s, old_i = top.values.numpy(), torch.gather(cand_i, 1, top.indices).numpy()
        indices[rows], sims[rows] = old_i, old_s
    stats = {"reused_images": len(plan.reuse), "full_search_images": len(plan.full), "added_rows": len(plan.added_rows),
             "compared_pairs": len(plan.reuse) * len(plan.added_rows) + len(plan.full) * len(table_ids)}  # fmt: skip
    return Negatives(indices, sims), stats


def previous_negatives(rows: Sequence[dict], k: int, policy: str, encoder_id: str) -> dict[str, list[tuple[str, float]]]:
    """Stored negatives Parquet rows -> {generated image id: [(negative id, similarity)] by rank}, only rows of
    the same k, policy and encoder (anything else is mined again; a generated image's id names its generator)."""
    by = {}
    for r in sorted(rows, key=lambda r: r["rank"]):
        if r["policy"] == policy and r["encoder_id"] == encoder_id:
            by.setdefault(r["generated_image_id"], []).append((r["negative_id"], float(r["similarity"])))
    return {g: v for g, v in by.items() if len(v) == k}
