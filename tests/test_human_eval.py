"""The human study's tasks (issue 20, item 1), built from RAG rows made here."""

import collections
import math

import pytest

from realrag_core.config.operations import HumanEvalConfig
from realrag_core.human_eval.tasks import build_tasks

PROTOCOLS = ("unseen_concepts", "seen_concepts")


def _rows(retriever_tag="v1"):
    """Two protocols x known/novel, 5 concepts each, one prompt per concept, seeds 0 and 1; the fine-tuned arms
    with two retriever seeds. contrastive and reflective retrieve the same image for every third concept."""
    rows = []
    for protocol in PROTOCOLS:
        for split in ("known", "novel"):
            for c in range(5):
                concept = f"{split}-{c}"
                pid = f"{protocol[:2]}-{concept}"
                for seed in (0, 1):
                    for arm, rseeds in (
                        ("none", [None]),
                        ("clip", [None]),
                        ("contrastive", [0, 1]),
                        ("reflective", [0, 1]),
                    ):
                        for rseed in rseeds:
                            if arm == "none":
                                ref = None
                            elif arm in ("contrastive", "reflective") and c % 3 == 0:
                                ref = f"db-{concept}"
                            else:
                                ref = f"db-{arm}-{concept}-{rseed}"
                            rows.append(
                                {
                                    "protocol": protocol,
                                    "arm": arm,
                                    "retriever_seed": rseed,
                                    "retriever_id": "" if arm == "none" else f"{arm}:{retriever_tag}:{rseed}",
                                    "prompt_id": pid,
                                    "prompt": f"a photo of {concept}",
                                    "concept": concept,
                                    "generator_split": split,
                                    "seed": seed,
                                    "path": f"images/g/{pid}/{ref or 'none'}_{seed}.png",
                                    "retrieved_id": ref,
                                }
                            )
    return rows


REAL = {f"{s}-{c}": [f"/real/{s}-{c}.png"] for s in ("known", "novel") for c in range(5) if c != 4}  # c4: none


def _cfg(**kw):
    return HumanEvalConfig(**({"pairwise_per_cell": 7, "rating_per_cell": 3, "real_or_generated_per_cell": 2} | kw))


def test_tasks_are_deterministic_and_another_seed_draws_others():
    first, report = build_tasks(_rows(), REAL, _cfg())
    again, _ = build_tasks(_rows(), REAL, _cfg())
    assert first.equals(again)
    other, other_report = build_tasks(_rows(), REAL, _cfg(seed=1))
    assert other_report["by_kind"] == report["by_kind"]  # the same design
    assert set(other["task_id"].to_pylist()) != set(first["task_id"].to_pylist())
    assert len(set(first["task_id"].to_pylist())) == first.num_rows  # ids are unique


def test_every_cell_gets_its_tasks_spread_over_concepts():
    table, report = build_tasks(_rows(), REAL, _cfg())
    tasks = table.to_pylist()
    arms = ("none", "clip", "contrastive", "reflective")
    pairwise = [t for t in tasks if t["kind"] == "pairwise"]
    cells = collections.Counter(
        (t["protocol"], t["generator_split"], frozenset((t["a_arm"], t["b_arm"]))) for t in pairwise
    )
    assert len(cells) == 2 * 2 * math.comb(len(arms), 2)
    assert set(cells.values()) == {7}
    for cell in cells:
        concepts = collections.Counter(
            t["concept"]
            for t in pairwise
            if (t["protocol"], t["generator_split"], frozenset((t["a_arm"], t["b_arm"]))) == cell
        )
        assert len(concepts) == 5 and max(concepts.values()) - min(concepts.values()) <= 1  # 7 tasks over 5 concepts
    ratings = collections.Counter(
        (t["protocol"], t["generator_split"], t["a_arm"]) for t in tasks if t["kind"] == "rating"
    )
    assert len(ratings) == 2 * 2 * len(arms) and set(ratings.values()) == {3}
    assert report["arms"] == list(arms) and report["arms_without_rows"] == []


def test_pairs_show_one_prompt_and_seed_from_two_arms_and_same_files_are_ties_not_shown():
    table, report = build_tasks(_rows(), REAL, _cfg())
    by_path = {(r["path"], r["arm"], r["retriever_seed"]): r for r in _rows()}
    orders = set()
    for t in (t for t in table.to_pylist() if t["kind"] == "pairwise"):
        a = by_path[(t["a_path"], t["a_arm"], t["a_retriever_seed"])]
        b = by_path[(t["b_path"], t["b_arm"], t["b_retriever_seed"])]
        assert a["arm"] != b["arm"]
        assert (a["prompt_id"], a["seed"], a["protocol"]) == (b["prompt_id"], b["seed"], b["protocol"])
        assert (t["prompt_id"], t["seed"], t["concept"]) == (a["prompt_id"], a["seed"], a["concept"])
        assert t["a_retriever_id"] == a["retriever_id"] and t["a_retrieved_id"] == a["retrieved_id"]  # lineage
        assert t["shown"] == (a["path"] != b["path"])
        orders.add((t["a_arm"], t["b_arm"]))
    assert ("reflective", "contrastive") in orders and ("contrastive", "reflective") in orders  # sides drawn
    assert report["not_shown_same_file"] == sum(not t for t in table["shown"].to_pylist()) > 0


def test_real_or_generated_pairs_each_generated_image_with_a_real_one_of_its_concept():
    table, _ = build_tasks(_rows(), REAL, _cfg())
    rog = [t for t in table.to_pylist() if t["kind"] == "real_or_generated"]
    assert rog and collections.Counter(t["answer"] for t in rog) == {"real": len(rog) // 2, "generated": len(rog) // 2}
    for t in rog:
        assert t["b_path"] is None
        if t["answer"] == "real":
            assert t["a_source"] == "real" and t["a_path"] in REAL[t["concept"]] and t["a_arm"] is None
        else:
            assert t["a_source"] == "rag" and t["a_arm"] is not None
        assert t["concept"] in REAL  # concepts without a real image are not asked about


def test_gold_tasks_know_their_answer():
    table, report = build_tasks(_rows(), REAL, _cfg())
    tasks = table.to_pylist()
    gold = [t for t in tasks if t["kind"] == "gold"]
    for protocol in PROTOCOLS:
        for split in ("known", "novel"):
            pairwise = sum(
                t["kind"] == "pairwise" and (t["protocol"], t["generator_split"]) == (protocol, split) for t in tasks
            )
            here = [t for t in gold if (t["protocol"], t["generator_split"]) == (protocol, split)]
            assert len(here) == math.ceil(0.1 * pairwise)
    assert {t["answer"] for t in gold} == {"a", "b"}
    for t in gold:
        right, wrong = ("a", "b") if t["answer"] == "a" else ("b", "a")
        assert t[f"{right}_concept"] == t["concept"] and t[f"{wrong}_concept"] != t["concept"]
        assert t["a_source"] == t["b_source"] == "real"


def test_a_retrain_makes_another_study_and_missing_arms_are_reported():
    _, first = build_tasks(_rows("v1"), REAL, _cfg())
    table, retrained = build_tasks(_rows("v2"), REAL, _cfg())
    assert retrained["study"] != first["study"]
    assert set(table["study"].to_pylist()) == {retrained["study"]}
    rows = [r for r in _rows() if r["arm"] != "clip"]
    _, report = build_tasks(rows, REAL, _cfg(arms=("none", "clip", "reflective")))
    assert report["arms"] == ["none", "reflective"] and report["arms_without_rows"] == ["clip"]
    with pytest.raises(ValueError, match="distinct RAG arms"):
        HumanEvalConfig(arms=("none", "dalle"))
