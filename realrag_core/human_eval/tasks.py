"""Human evaluation, part 1: the study's tasks, built from the RAG stage's current rows (issue 20).

Three kinds of task, as the paper's user study and ImageRAG's, plus gold tasks to spot careless raters:

- ``pairwise``: the same prompt and seed from two arms, sides drawn per task, "which image shows <concept> more
  faithfully?" (or "can't tell"). Two arms that retrieved the same reference made the same file: such a pair is
  kept with ``shown`` false, never served, and counts as a tie.
- ``rating``: one generated image and its prompt, the paper's 7-point scales for faithfulness and realism.
- ``real_or_generated``: a held-out real image of the concept or a generated one, "real picture or generated?";
  as many real images as generated ones in each cell, served at the generated images' size and encoding.
- ``gold``: a real image of the prompt's concept against a real image of another concept; the answer is known.

Every cell (protocol x known/novel x arm or arm pair) gets the configured number of tasks, spread over its
concepts in turn (a concept repeats only when the cell has more tasks than concepts), all drawn by
``HumanEvalConfig.seed``. The study version hashes every task: a retrain (new retriever ids, new images) makes
another study, so its votes are never mixed with an old one's. Tasks are data with each image's lineage (arm,
retriever id and seed, retrieved id, path); what a rater may see is decided by the server, not here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import defaultdict
from typing import Sequence

import pyarrow as pa
from pathlib import Path

KINDS = ("pairwise", "rating", "real_or_generated", "gold")
SIDE_FIELDS = (
    ("source", pa.string()),  # "rag" (a path under the RAG folder) | "real" (a source image path)
    ("arm", pa.string()),
    ("retriever_seed", pa.int64()),
    ("retriever_id", pa.string()),
    ("retrieved_id", pa.string()),
    ("concept", pa.string()),
    ("path", pa.string()),
)
TASK_SCHEMA = pa.schema(
    [
        ("study", pa.string()),
        ("task_id", pa.string()),
        ("kind", pa.string()),
        ("protocol", pa.string()),
        ("generator_split", pa.string()),
        ("concept", pa.string()),
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("seed", pa.int64()),
        ("question", pa.string()),
        *[(f"a_{name}", t) for name, t in SIDE_FIELDS],
        *[(f"b_{name}", t) for name, t in SIDE_FIELDS],
        ("shown", pa.bool_()),  # False: a pair of one file, not served, a tie
        ("answer", pa.string()),  # gold: "a" | "b"; real_or_generated: "real" | "generated"; else null
    ]
)
QUESTIONS = {
    "pairwise": "Which image shows {concept} more faithfully?",
    "rating": "How faithfully does the image show {concept}, and how realistic does it look? (1-7 each)",
    "real_or_generated": "Is this a real picture or a generated one?",
    "gold": "Which image shows {concept} more faithfully?",
}


def _side(row: dict | None) -> dict:
    """One side of a task from a RAG row (or an empty side)."""
    if row is None:
        return {name: None for name, _ in SIDE_FIELDS}
    return {"source": "rag", **{name: row[name] for name, _ in SIDE_FIELDS if name != "source"}}


def _real_side(path: str, concept: str) -> dict:
    return {**_side(None), "source": "real", "concept": concept, "path": path}


def _spread(candidates: Sequence, n: int, rng: random.Random, concept_of) -> list:
    """``n`` candidates spread over their concepts: concepts in a drawn order, one candidate of each in turn."""
    by_concept: dict[str, list] = defaultdict(list)
    for c in candidates:
        by_concept[concept_of(c)].append(c)
    order = sorted(by_concept)
    rng.shuffle(order)
    pools = {c: rng.sample(by_concept[c], len(by_concept[c])) for c in order}
    out = []
    while len(out) < n and any(pools.values()):
        for c in order:
            if pools[c] and len(out) < n:
                out.append(pools[c].pop())
    return out


def _task(kind: str, head: dict, a: dict, b: dict, shown: bool = True, answer: str | None = None, slot=None) -> dict:
    """A task row; its id hashes its content (and ``slot``: which draw of its cell it is, for tasks whose content
    can repeat, such as one real image shown for two arms' generated images)."""
    task = {
        "kind": kind,
        **head,
        "question": QUESTIONS[kind].format(concept=head["concept"]),
        **{f"a_{k}": v for k, v in a.items()},
        **{f"b_{k}": v for k, v in b.items()},
        "shown": shown,
        "answer": answer,
    }
    content = json.dumps([{k: task[k] for k in sorted(task)}, slot], sort_keys=True, default=str)
    task["task_id"] = hashlib.sha256(content.encode()).hexdigest()[:16]
    return task


def build_tasks(rows: Sequence[dict], real: dict[str, list[str]], cfg) -> tuple[pa.Table, dict]:
    """The study's tasks (``TASK_SCHEMA``) and a report of their counts per cell.

    ``rows``: the RAG stage's current rows (``rag.current_rows``), each with its ``protocol``; ``real``: concept
    -> held-out real image paths (the reference style's, never the database's); ``cfg``: ``HumanEvalConfig``."""
    rng = random.Random(f"human-eval-{cfg.seed}")
    arms = [a for a in cfg.arms if any(r["arm"] == a for r in rows)]
    missing = sorted(set(cfg.arms) - set(arms))
    # one row per (protocol, arm, prompt, seed): a fine-tuned arm's retriever seed drawn per prompt and seed
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["arm"], -1 if r["retriever_seed"] is None else r["retriever_seed"])):
        by_key[(r["protocol"], r["arm"], r["prompt_id"], r["seed"])].append(r)
    pick = {key: rng.choice(sorted(group, key=lambda r: r["retriever_seed"] or 0)) for key, group in by_key.items()}
    strata = sorted({(r["protocol"], r["generator_split"]) for r in rows})
    tasks, counts = [], defaultdict(int)
    for protocol, split in strata:

        def head(r, protocol=protocol, split=split):
            return {
                "protocol": protocol,
                "generator_split": split,
                "concept": r["concept"],
                "prompt_id": r["prompt_id"],
                "prompt": r["prompt"],
                "seed": r["seed"],
            }

        cell_rows = {
            arm: sorted(
                (v for (p, a, _, _), v in pick.items() if p == protocol and a == arm and v["generator_split"] == split),
                key=lambda r: (r["prompt_id"], r["seed"]),
            )
            for arm in arms
        }
        pairwise_here = 0
        for left, right in itertools.combinations(arms, 2):
            other = {(r["prompt_id"], r["seed"]): r for r in cell_rows[right]}
            both = [
                (r, other[(r["prompt_id"], r["seed"])]) for r in cell_rows[left] if (r["prompt_id"], r["seed"]) in other
            ]
            for x, y in _spread(both, cfg.pairwise_per_cell, rng, lambda pair: pair[0]["concept"]):
                if rng.random() < 0.5:
                    x, y = y, x
                same = x["path"] == y["path"]
                tasks.append(_task("pairwise", head(x), _side(x), _side(y), shown=not same))
                counts[f"pairwise/{protocol}/{split}/{left}-{right}" + ("/same_file" if same else "")] += 1
                pairwise_here += 1
        for arm in arms:
            for r in _spread(cell_rows[arm], cfg.rating_per_cell, rng, lambda r: r["concept"]):
                tasks.append(_task("rating", head(r), _side(r), _side(None)))
                counts[f"rating/{protocol}/{split}/{arm}"] += 1
            with_real = [r for r in cell_rows[arm] if real.get(r["concept"])]
            for r in _spread(with_real, cfg.real_or_generated_per_cell, rng, lambda r: r["concept"]):
                tasks.append(_task("real_or_generated", head(r), _side(r), _side(None), answer="generated"))
                path = rng.choice(sorted(real[r["concept"]]))
                real_task = _task(
                    "real_or_generated", head(r), _real_side(path, r["concept"]), _side(None), answer="real", slot=arm
                )
                tasks.append(real_task)
                counts[f"real_or_generated/{protocol}/{split}/{arm}"] += 2
        # gold: the prompt's concept (a real image of it) against a real image of another concept
        concepts = sorted({r["concept"] for rs in cell_rows.values() for r in rs if real.get(r["concept"])})
        n_gold = math.ceil(cfg.gold_fraction * pairwise_here) if concepts and len(real) > 1 else 0
        any_arm = next((cell_rows[a] for a in arms if cell_rows[a]), [])
        prompts = [r for r in any_arm if real.get(r["concept"])]
        for r in _spread(prompts, n_gold, rng, lambda r: r["concept"]):
            others = sorted(c for c in real if c != r["concept"] and real[c])
            decoy = rng.choice(others)
            right = _real_side(rng.choice(sorted(real[r["concept"]])), r["concept"])
            wrong = _real_side(rng.choice(sorted(real[decoy])), decoy)
            a, b, answer = (right, wrong, "a") if rng.random() < 0.5 else (wrong, right, "b")
            tasks.append(_task("gold", head(r), a, b, answer=answer))
            counts[f"gold/{protocol}/{split}"] += 1
    study = hashlib.sha256(
        json.dumps([sorted(t["task_id"] for t in tasks), cfg.model_dump(mode="json")], sort_keys=True).encode()
    ).hexdigest()[:12]
    for t in tasks:
        t["study"] = study
    table = pa.Table.from_pylist(tasks, schema=TASK_SCHEMA)
    report = {
        "study": study,
        "tasks": len(tasks),
        "by_kind": {k: sum(t["kind"] == k for t in tasks) for k in KINDS},
        "not_shown_same_file": sum(not t["shown"] for t in tasks),
        "cells": dict(sorted(counts.items())),
        "arms": arms,
        "arms_without_rows": missing,
    }
    return table, report


def study_inputs(cfg, store, shard_count: int) -> tuple[list[dict], dict[str, list[str]], dict]:
    """The RAG stage's current rows on the evaluation prompts (each with its protocol) and the held-out real
    images of their concepts (the reference style's: never a database image; only those ``image_embeddings``
    found decodable), as ``build_tasks`` takes them.
    Refuses a partial RAG stage as the results stage does: a study drawn from some shards would be redrawn."""
    from realrag_core.embed.embedding import reference_listing
    from realrag_core.generators.registry import recorded_generator_id
    from realrag_core.rag.retrieve import complete_eval_rows

    rows = [{**r, "protocol": p} for p, (here, _) in complete_eval_rows(cfg, store, shard_count).items() for r in here]
    generator_id = recorded_generator_id(cfg, store)
    real: dict[str, list[str]] = defaultdict(list)
    style = cfg.world.styles.reference
    concepts = {r["concept"] for r in rows}
    if style:  # the reference images stage 1 read and decoded: never a broken file shown as a real picture
        for rec in reference_listing(store.rejects_dir):
            if rec.style == style and rec.concept in concepts:
                real[rec.concept].append(str(rec.path))
    return rows, dict(real), {"generator_id": generator_id, "real_style": style}


def write_tasks(table: pa.Table, folder: Path) -> Path:
    """``<folder>/<study>/tasks.parquet``, written atomically; earlier studies' folders stay as they are (their
    votes belong to them)."""
    import pyarrow.parquet as pq

    studies = set(table["study"].to_pylist())
    if len(studies) != 1:
        raise ValueError(f"a task table holds one study, not {sorted(studies)}")
    path = folder / studies.pop() / "tasks.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    current = folder / ".current.tmp"
    current.write_text(path.parent.name)
    current.replace(folder / CURRENT)  # the study `realrag human-eval serve` opens by default
    return path


CURRENT = "CURRENT"


def current_study(folder: Path, study: str | None = None) -> Path:
    """The folder of ``study``, or of the latest drawn one; a clear error before any study exists."""
    name = study or ((folder / CURRENT).read_text().strip() if (folder / CURRENT).is_file() else None)
    if name is None or not (folder / name / "tasks.parquet").is_file():
        raise FileNotFoundError(
            f"no study{' ' + name if name else ''} in {folder}: materialize human_eval_tasks first "
            "(in the UI, or on the command line: asset materialize --select human_eval_tasks -m pipelines.definitions)"
        )
    return folder / name
