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
import pyarrow as pa
import pyarrow.compute as pc
import torch

from realrag_core.embed.topk import blocked_topk

POLICIES = ("exclude_concept", "exclude_positive")


@dataclass
class Negatives:
    indices: np.ndarray  # [G, k] row indices into the table arrays
    similarities: np.ndarray  # [G, k], descending


def _strings(values) -> pa.Array:
    """Ids or concepts as one Arrow string array (Arrow columns pass through without a Python loop)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values if isinstance(values, list) else list(values), pa.string())
    return values.cast(pa.string())


def _concept_codes(generated_concepts, table_concepts) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes of both sides' concepts (the table's dictionary; -1 for a concept the table lacks), for masking
    same-concept pairs in bulk: 4 bytes per table row."""
    encoded = _strings(table_concepts).dictionary_encode()
    table_codes = np.array(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    found = pc.fill_null(pc.index_in(_strings(generated_concepts), value_set=encoded.dictionary), -1)
    return torch.from_numpy(np.array(found.to_numpy(zero_copy_only=False), dtype=np.int32)), torch.from_numpy(
        table_codes
    )


def mine_negatives(
    generated: np.ndarray,  # [G, d] normalised
    generated_concepts: Sequence[str],
    table: np.ndarray,  # [N, d] normalised
    table_concepts: Sequence[str],
    k: int,
    *,
    policy: str = "exclude_concept",
    chunk_rows: int = 4096,
    query_block: int = 1024,
    strict: bool = True,
) -> Negatives:
    """Exact top k by cosine (``topk.blocked_topk``: blocked over table rows and queries, never a per-query
    loop); under ``exclude_concept`` rows of the query's own concept are masked."""
    if policy not in POLICIES:
        raise ValueError(f"unknown negative policy {policy!r}; expected one of {POLICIES}")
    gc, tc = _concept_codes(generated_concepts, table_concepts) if policy == "exclude_concept" else (None, None)
    best_s, best_i = blocked_topk(
        generated, table, k, query_codes=gc, row_codes=tc, chunk_rows=chunk_rows, query_block=query_block
    )
    if strict and torch.isinf(best_s).any():  # a masked (same-concept) or missing candidate reached the top k
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

    return pa.table(
        {
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
        }
    )


@dataclass
class IncrementalPlan:
    """Which generated images can be updated from the added rows alone, and which need a full search."""

    reuse: list[int]  # generated-image positions whose previous k negatives all still exist
    full: list[int]  # no previous negatives, a different k/policy, or a previous negative was removed
    added_rows: np.ndarray  # table positions of rows the previous mining did not see
    reuse_positions: np.ndarray  # [len(reuse), k] table positions of the reused images' previous negatives


def plan_incremental(
    generated_ids: Sequence[str], previous: dict[str, list[tuple[str, float]]], table_ids, previous_table_ids, k: int
) -> IncrementalPlan:
    """``previous[g]``: image g's previous negatives as (table id, similarity), best first, mined against the
    table whose ids were ``previous_table_ids``. Their top k over the old rows is exact, so the top k over the
    current table is the top k of (previous negatives, best k among the added rows), unless one of the previous
    negatives left the table (then that image is searched in full). Id lookups run as Arrow hash joins, so the
    bookkeeping costs little next to the similarity products even on millions of rows."""
    ids = _strings(table_ids)
    old = (
        previous_table_ids if isinstance(previous_table_ids, (pa.Array, pa.ChunkedArray)) else list(previous_table_ids)
    )
    added = pc.indices_nonzero(pc.invert(pc.is_in(ids, value_set=_strings(old)))).to_numpy().astype(np.int64)
    gen = list(generated_ids)
    candidates = [i for i, g in enumerate(gen) if len(previous.get(g) or ()) == k]
    wanted = pa.array([n for i in candidates for n, _ in previous[gen[i]]], pa.string())
    found = pc.fill_null(pc.index_in(wanted, value_set=ids), -1).to_numpy().astype(np.int64).reshape(-1, k)
    alive = (found >= 0).all(axis=1) if len(candidates) else np.zeros(0, dtype=bool)
    reuse = [i for i, ok in zip(candidates, alive) if ok]
    kept = set(reuse)
    full = [i for i in range(len(gen)) if i not in kept]
    return IncrementalPlan(reuse, full, added, found[alive] if len(candidates) else np.zeros((0, k), np.int64))


def mine_incremental(
    generated: np.ndarray,
    generated_ids: Sequence[str],
    generated_concepts: Sequence[str],
    *,
    table: np.ndarray,
    table_ids,
    table_concepts,
    previous: dict[str, list[tuple[str, float]]],
    previous_table_ids,
    k: int,
    policy: str = "exclude_concept",
    chunk_rows: int = 4096,
) -> tuple[Negatives, dict]:
    """The same negatives as ``mine_negatives`` over the whole table, computed from the previous result and the
    added rows; cost grows with the added rows (plus full searches only for images that lost a negative).
    Ids and concepts may be Python sequences or Arrow arrays (what a table read gives, without a copy)."""
    plan = plan_incremental(generated_ids, previous, table_ids, previous_table_ids, k)
    gen_c, table_c = _strings(generated_concepts), _strings(table_concepts)
    indices = np.zeros((len(generated_ids), k), dtype=np.int64)
    sims = np.zeros((len(generated_ids), k), dtype=np.float32)
    if plan.full:
        full = pa.array(plan.full, pa.int64())
        done = mine_negatives(
            generated[plan.full], gen_c.take(full), table, table_c, k, policy=policy, chunk_rows=chunk_rows
        )
        indices[plan.full], sims[plan.full] = done.indices, done.similarities
    if plan.reuse:
        rows = plan.reuse
        gen_ids = list(generated_ids)
        old_i = plan.reuse_positions
        old_s = np.array([[s for _, s in previous[gen_ids[i]]] for i in rows], dtype=np.float32)
        if len(plan.added_rows):
            added = plan.added_rows
            # the same kernel over the added rows; they may hold fewer than k candidates outside a concept (-inf)
            part = mine_negatives(
                generated[rows],
                gen_c.take(pa.array(rows, pa.int64())),
                table[added],
                table_c.take(pa.array(added)),
                k,
                policy=policy,
                chunk_rows=chunk_rows,
                strict=False,
            )
            found = np.where(part.indices >= 0, added[np.maximum(part.indices, 0)], -1)
            cand_s = torch.cat([torch.from_numpy(old_s), torch.from_numpy(part.similarities)], dim=1)
            cand_i = torch.cat([torch.from_numpy(old_i), torch.from_numpy(found)], dim=1)
            top = cand_s.topk(k, dim=1)
            old_s, old_i = top.values.numpy(), torch.gather(cand_i, 1, top.indices).numpy()
        indices[rows], sims[rows] = old_i, old_s
    stats = {
        "reused_images": len(plan.reuse),
        "full_search_images": len(plan.full),
        "added_rows": len(plan.added_rows),
        "compared_pairs": len(plan.reuse) * len(plan.added_rows) + len(plan.full) * len(table),
    }
    return Negatives(indices, sims), stats


def previous_negatives(
    rows: Sequence[dict], k: int, policy: str, encoder_id: str
) -> dict[str, list[tuple[str, float]]]:
    """Stored negatives Parquet rows -> {generated image id: [(negative id, similarity)] by rank}, only rows of
    the same k, policy and encoder (anything else is mined again; a generated image's id names its generator)."""
    by = {}
    for r in sorted(rows, key=lambda r: r["rank"]):
        if r["policy"] == policy and r["encoder_id"] == encoder_id:
            by.setdefault(r["generated_image_id"], []).append((r["negative_id"], float(r["similarity"])))
    return {g: v for g, v in by.items() if len(v) == k}
