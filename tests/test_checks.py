"""The stage checks on good and on damaged data: each damage is caught and named."""

import math

import numpy as np
import torch
from safetensors.torch import save_file

from realrag_core.evaluate.checks import (
    beats_zero_shot_outcome,
    coverage_outcome,
    embeddings_outcome,
    finite_weights_outcome,
    negatives_outcome,
    results_outcome,
)


def _unit(n, d=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embeddings_check_names_each_kind_of_bad_row():
    good = embeddings_outcome([(["a", "b"], _unit(2), ["m", "m"]), (["c"], _unit(1, seed=1), ["m"])], "m")
    assert good.passed and good.numbers["rows"] == 3
    vectors = _unit(5)
    vectors[1, 0] = np.nan
    vectors[2] *= 2.0
    bad = embeddings_outcome([(["a", "b", "c", "a", "e"], vectors, ["m", "m", "m", "m", "other"])], "m")
    assert not bad.passed
    assert bad.numbers == {
        "rows": 5,
        "nonfinite": 1,
        "not_unit_norm": 1,
        "duplicate_ids": 1,
        "rows_of_another_model": 1,
    }
    assert not embeddings_outcome([], "m").passed  # an empty table is not a database


def test_coverage_warns_on_extra_rows_and_fails_on_lost_ones():
    report = {"inserted": 3, "skipped_unchanged": 6, "valid_images": 8, "rejected": 2}  # one image listed twice
    assert coverage_outcome(8, report).passed
    extra = coverage_outcome(9, report)
    assert not extra.passed and extra.warning_only
    lost = coverage_outcome(7, report)
    assert not lost.passed and not lost.warning_only and "1 valid image" in lost.summary


def _negatives(k=2):
    generated = [{"image_id": f"g{i}"} for i in range(3)]
    rows = [
        {
            "generated_image_id": f"g{i}",
            "rank": r,
            "similarity": 0.9 - 0.1 * r,
            "concept": f"c{i}",
            "negative_concept": f"x{r}",
            "table_version": 7,
        }
        for i in range(3)
        for r in range(1, k + 1)
    ]
    return rows, generated


def test_negatives_check_catches_missing_stale_unordered_and_same_concept_rows():
    rows, generated = _negatives()
    assert negatives_outcome(rows, generated, 2, "exclude_concept", 7).passed
    assert negatives_outcome(rows[:-1], generated, 2, "exclude_concept", 7).numbers["wrong_count"] == 1
    assert negatives_outcome(rows[2:], generated, 2, "exclude_concept", 7).numbers["missing_images"] == 1
    assert negatives_outcome(rows, generated, 2, "exclude_concept", 8).numbers["rows_from_another_table_version"] == 6
    swapped = [dict(r) for r in rows]
    swapped[0]["similarity"], swapped[1]["similarity"] = 0.1, 0.9  # rank 1 less similar than rank 2
    assert negatives_outcome(swapped, generated, 2, "exclude_concept", 7).numbers["unordered_or_nonfinite"] == 1
    nan = [dict(r) for r in rows]
    nan[3]["similarity"] = math.nan
    assert negatives_outcome(nan, generated, 2, "exclude_concept", 7).numbers["unordered_or_nonfinite"] == 1
    same = [dict(r) for r in rows]
    same[0]["negative_concept"] = same[0]["concept"]
    assert not negatives_outcome(same, generated, 2, "exclude_concept", 7).passed
    assert negatives_outcome(same, generated, 2, "exclude_positive", 7).passed  # allowed under that policy
    old = rows + [{**rows[0], "generated_image_id": "old"}]  # rows of a generated image no longer current
    assert negatives_outcome(old, generated, 2, "exclude_concept", 7).numbers["images_not_current"] == 1


def test_finite_weights_check_reads_every_checkpoint(tmp_path):
    for seed, value in ((0, 1.0), (1, float("inf"))):
        (tmp_path / f"seed_{seed}").mkdir()
        save_file(
            {"w": torch.full((2, 2), value), "step": torch.tensor([3])},
            str(tmp_path / f"seed_{seed}" / "m.safetensors"),
        )
    files = sorted(tmp_path.glob("seed_*/m.safetensors"))
    assert finite_weights_outcome(files[:1]).passed
    bad = finite_weights_outcome(files)
    assert not bad.passed and bad.numbers["nonfinite_tensors"] == 1 and "seed_1/w" in bad.summary
    assert not finite_weights_outcome([]).passed


def test_zero_shot_check_is_a_warning_per_split():
    report = {
        "validation": {"known": {"top1": 0.2}, "novel": {"top1": 0.1}},
        "validation_zero_shot": {"known": {"top1": 0.1}, "novel": {"top1": 0.15}},
    }
    out = beats_zero_shot_outcome(report)
    assert not out.passed and out.warning_only and "novel" in out.summary and "known" not in out.summary


def test_results_check_wants_every_arm_and_split_and_finite_values():
    rows = [
        {"arm": a, "split": s, "metric": m, "value": 0.5}
        for a in ("none", "clip")
        for s in ("known", "novel")
        for m in ("concept_acc", "clip_t")
    ]
    assert results_outcome(rows, ("none", "clip"), ("known", "novel")).passed
    assert results_outcome(rows[1:], ("none", "clip"), ("known", "novel")).numbers["missing"] == 1
    rows[2]["value"] = float("nan")
    assert results_outcome(rows, ("none", "clip"), ("known", "novel")).numbers["nonfinite"] == 1
