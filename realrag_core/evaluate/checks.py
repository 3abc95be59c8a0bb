"""Checks of what each stage stored, as pure functions (the Dagster asset checks in ``assets/checks.py`` call
them). Each returns an ``Outcome``: passed, a one-line summary, and the numbers behind it."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from realrag_core.data.prompts import row_protocol


@dataclass
class Outcome:
    passed: bool
    summary: str
    numbers: dict = field(default_factory=dict)
    warning_only: bool = False  # failed, but not bad enough to stop later stages


def embeddings_outcome(
    batches: Iterable[tuple[list[str], np.ndarray, list[str]]], model_id: str, norm_tolerance: float = 1e-3
) -> Outcome:
    """``batches`` of (ids, vectors [n, d], model ids) from the table: every vector finite and unit-norm, every
    id once, every row written by the table's model."""
    rows = nonfinite = off_norm = other_model = 0
    seen: Counter = Counter()
    for ids, vectors, models in batches:
        vectors = np.asarray(vectors, dtype=np.float64)
        rows += len(ids)
        finite = np.isfinite(vectors).all(axis=1)
        nonfinite += int((~finite).sum())
        norms = np.linalg.norm(np.where(finite[:, None], vectors, 0.0), axis=1)
        off_norm += int((finite & (np.abs(norms - 1.0) > norm_tolerance)).sum())
        other_model += sum(m != model_id for m in models)
        seen.update(ids)
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    numbers = {
        "rows": rows,
        "nonfinite": nonfinite,
        "not_unit_norm": off_norm,
        "duplicate_ids": duplicates,
        "rows_of_another_model": other_model,
    }
    bad = {k: v for k, v in numbers.items() if k != "rows" and v}
    summary = "every vector finite, unit-norm, one row per id" if not bad else f"bad rows: {bad}"
    return Outcome(not bad and rows > 0, summary if rows else "the table is empty", numbers)


def coverage_outcome(rows: int, report: dict | None) -> Outcome:
    """The table holds a row for every valid image the last embedding run saw (``valid_images``);
    more rows are images since removed from the source (a warning), fewer are lost rows (a failure)."""
    if not report:
        return Outcome(False, "no image_embeddings report: materialize image_embeddings", {"rows": rows})
    expected = int(report.get("valid_images", int(report["inserted"]) + int(report["skipped_unchanged"])))
    numbers = {"rows": rows, "valid_images_seen": expected, "rejected": int(report.get("rejected", 0))}
    if rows < expected:
        return Outcome(False, f"{expected - rows} valid image(s) have no row", numbers)
    if rows > expected:
        return Outcome(False, f"{rows - expected} row(s) of images no longer in the source", numbers, warning_only=True)
    return Outcome(True, "one row per valid image", numbers)


def label_conflicts_outcome(report: dict | None) -> Outcome:
    """No picture listed under two concepts (a warning, never a stop: ``embeddings.label_conflicts`` says what
    the table keeps, and the conflicts file lists each one)."""
    if not report:
        return Outcome(False, "no image_embeddings report: materialize image_embeddings", {})
    conflicts = int(report.get("label_conflicts", 0))
    numbers = {"label_conflicts": conflicts, "rows_dropped": int(report.get("label_conflict_rows_dropped", 0))}
    if conflicts:
        return Outcome(
            False,
            f"{conflicts} picture(s) listed under two or more concepts: see {report.get('label_conflicts_path', '')}",
            numbers,
            warning_only=True,
        )
    return Outcome(True, "every picture has one concept", numbers)


def _ranked_by_similarity(rows: list[dict]) -> bool:
    """Similarities finite and non-increasing by rank."""
    sims = [r["similarity"] for r in sorted(rows, key=lambda r: r["rank"])]
    return all(math.isfinite(x) for x in sims) and all(a >= b - 1e-6 for a, b in zip(sims, sims[1:]))


def negatives_outcome(negatives: list[dict], generated: list[dict], k: int, policy: str, table_version: int) -> Outcome:
    """Every generated image of the current generator has exactly k negatives ranked 1..k with finite,
    non-increasing similarities; none is of the prompt's concept under ``exclude_concept``; all were mined from
    the current table version."""
    by_image = defaultdict(list)
    for n in negatives:
        by_image[n["generated_image_id"]].append(n)
    wanted = {g["image_id"] for g in generated}
    missing = len(wanted - set(by_image))
    wrong_k = sum(sorted(r["rank"] for r in rows) != list(range(1, k + 1)) for rows in by_image.values())
    unordered = sum(not _ranked_by_similarity(rows) for rows in by_image.values())
    same_concept = sum(n["concept"] == n["negative_concept"] for n in negatives) if policy == "exclude_concept" else 0
    stale = sum(n["table_version"] != table_version for n in negatives)
    foreign = len(set(by_image) - wanted)
    numbers = {
        "generated_images": len(wanted),
        "rows": len(negatives),
        "k": k,
        "missing_images": missing,
        "wrong_count": wrong_k,
        "unordered_or_nonfinite": unordered,
        "same_concept": same_concept,
        "rows_from_another_table_version": stale,
        "images_not_current": foreign,
    }
    bad = {key: v for key, v in numbers.items() if key not in ("generated_images", "rows", "k") and v}
    return Outcome(
        not bad and len(wanted) > 0,
        f"{k} negative(s) for each of {len(wanted)} generated images" if not bad else f"bad: {bad}",
        numbers,
    )


def finite_weights_outcome(files: list[Path]) -> Outcome:
    """Every tensor of every safetensors file finite."""
    from safetensors.torch import load_file

    bad, tensors = [], 0
    for path in files:
        for name, tensor in load_file(str(path)).items():
            tensors += 1
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                bad.append(f"{path.parent.name}/{name}")
    numbers = {"files": len(files), "tensors": tensors, "nonfinite_tensors": len(bad)}
    if not files:
        return Outcome(False, "no checkpoint files", numbers)
    return Outcome(not bad, "all weights finite" if not bad else f"non-finite: {bad[:5]}", numbers)


def beats_zero_shot_outcome(report: dict | None) -> Outcome:
    """Validation top-1 (mean over training seeds) at least the zero-shot model's, per split: a warning when
    not, since a fine-tune may honestly not help (the demo world measures exactly that)."""
    if not report:
        return Outcome(False, "no retriever report", {})
    numbers, worse = {}, []
    for split, m in report["validation"].items():
        zero = report["validation_zero_shot"][split]["top1"]
        numbers[f"{split}/top1"], numbers[f"{split}/zero_shot_top1"] = m["top1"], zero
        if m["top1"] < zero:
            worse.append(f"{split} {m['top1']:.3f} < {zero:.3f}")
    passed = not worse
    return Outcome(
        passed,
        "validation top-1 >= zero-shot" if passed else "below zero-shot: " + "; ".join(worse),
        numbers,
        warning_only=True,
    )


def results_outcome(
    results: list[dict],
    arms: Iterable[str],
    splits: Iterable[str],
    metrics: Iterable[str] = ("concept_acc", "clip_t"),
    protocols: Iterable[str] = ("unseen_concepts",),
) -> Outcome:
    """Every (protocol, arm, split) has every required metric, and every value in the table is finite."""
    have = {(row_protocol(r), r["arm"], r["split"], r["metric"]) for r in results}
    missing = [
        f"{p}/{a}/{s}/{m}" for p in protocols for a in arms for s in splits for m in metrics if (p, a, s, m) not in have
    ]
    nonfinite = [
        f"{r['arm']}/{r['split']}/{r['metric']}" for r in results if r["value"] is None or not math.isfinite(r["value"])
    ]
    numbers = {"rows": len(results), "missing": len(missing), "nonfinite": len(nonfinite)}
    passed = not missing and not nonfinite
    summary = "complete and finite" if passed else f"missing {missing[:5]}, non-finite {nonfinite[:5]}"
    return Outcome(passed, summary, numbers)
