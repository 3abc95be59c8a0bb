"""Validation-only controls and ablations of the reflective retriever (section 8 of the method's claims).

Every variant is the reflective retriever's recipe at its chosen learning rate with one thing changed:
- controls: the reflective negatives replaced by as many *random* database images of other concepts, or by the
  images nearest to the prompt's *text* under the base CLIP (other concepts): if these match reflection, the
  gain comes from more (or harder) negatives, not from reflecting on the generator;
- the negative policy (``exclude_positive``, the paper-literal reading) and k, mined again from the same
  generated images;
- the generator: negatives mined from another generator's G(T) (e.g. the same network untrained).
The learning-rate grids of both retrievers come from their own reports. Nothing here touches evaluation prompts.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from realrag_core.clip.bundle import load_clip
from realrag_core.mining.reflective import mine_negatives, negatives_table
from realrag_core.data.prompts import Prompt
from realrag_core.embed.table import VECTOR_COLUMN
from realrag_core.retriever.fit import (
    TableView,
    fit_one,
    load_pixels,
    mean_validation,
    negatives_by_prompt,
    table_view,
    validation_score,
)


def control_negatives(
    kind: str,
    prompts: Sequence[Prompt],
    table: TableView,
    counts: dict[str, int],
    *,
    text_emb: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """For each prompt, ``counts[prompt_id]`` database images of other concepts: ``random`` ones (seeded), or the
    ``text_nearest`` ones to the prompt's text embedding ``text_emb`` (rows aligned with ``prompts``)."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    concepts = np.asarray(table.concepts, dtype=object)
    for i, p in enumerate(prompts):
        c = counts.get(p.prompt_id, 0)
        if not c:
            continue
        others = np.flatnonzero(concepts != p.concept)
        if len(others) < c:
            raise ValueError(f"only {len(others)} database images outside {p.concept!r}, {c} negatives wanted")
        if kind == "random":
            rows = rng.sample(others.tolist(), c)
        elif kind == "text_nearest":
            if text_emb is None:
                raise ValueError("text_nearest controls need the prompts' text embeddings")
            sims = table.embeddings[others] @ text_emb[i]
            rows = others[sims.topk(c).indices.numpy()].tolist()
        else:
            raise ValueError(f"unknown control {kind!r}; expected random or text_nearest")
        out[p.prompt_id] = [table.ids[r] for r in rows]
    return out


def remine(generated, rows, k: int, policy: str, table_version: int) -> list[dict]:
    """Reflective negatives of the same generated images under another k or policy."""
    emb = np.stack(generated["embedding"].to_numpy(zero_copy_only=False))
    table_emb = np.stack(rows[VECTOR_COLUMN].to_numpy(zero_copy_only=False))
    neg = mine_negatives(
        emb, generated["concept"].to_pylist(), table_emb, rows["concept"].to_pylist(), k, policy=policy
    )
    return negatives_table(generated, rows, neg, table_version, policy).to_pylist()


def run_ablations(
    cfg,
    base_folder: Path,
    prompts: Sequence[Prompt],
    rows,
    *,
    generated,
    negatives_rows: list[dict],
    table_version: int,
    reflective: dict,
    contrastive: dict,
    progress=None,
    other_generated: dict | None = None,
) -> list[dict]:
    """One row per variant: validation top-1/top-5 per generator split, mean over the ablation seeds."""
    a = cfg.retriever.ablations
    table = table_view(rows)
    train = [p for p in prompts if p.retriever_split == "train"]
    val = [p for p in prompts if p.retriever_split == "val"]
    lr = reflective["chosen_lr"]
    reflective_of = negatives_by_prompt(negatives_rows)
    counts = {pid: len(ids) for pid, ids in reflective_of.items()}
    variants: list[
        tuple[str, str, dict, bool, str | None]
    ] = []  # name, what changed, negatives, drop positive, trainable
    base = load_clip(base_folder, cfg.device, cfg.precision)
    text_emb = base.embed_texts([p.prompt for p in train])
    for kind in a.controls:
        variants.append(
            (
                f"control_{kind}",
                f"{kind} negatives, same count as reflective",
                control_negatives(kind, train, table, counts, text_emb=text_emb, seed=cfg.prompts.seed),
                False,
                None,
            )
        )
    for policy in a.policies:
        if policy != cfg.mining.policy:
            mined = remine(generated, rows, cfg.mining.k, policy, table_version)
            variants.append(
                (
                    f"policy_{policy}",
                    f"negative policy {policy}",
                    negatives_by_prompt(mined),
                    policy == "exclude_positive",
                    None,
                )
            )
    for k in a.k:
        if k != cfg.mining.k:
            mined = remine(generated, rows, k, cfg.mining.policy, table_version)
            variants.append(
                (
                    f"k_{k}",
                    f"k={k} negatives per generated image",
                    negatives_by_prompt(mined),
                    cfg.mining.policy == "exclude_positive",
                    None,
                )
            )
    drop_main = cfg.mining.policy == "exclude_positive"
    for name, manifest in (other_generated or {}).items():  # the same prompts and seeds, another generator's G(T)
        mined = remine(manifest, rows, cfg.mining.k, cfg.mining.policy, table_version)
        variants.append(
            (
                f"generator_{name}",
                f"negatives mined from the {name} generator's G(T)",
                negatives_by_prompt(mined),
                drop_main,
                None,
            )
        )
    for part in a.trainable:
        if part != cfg.retriever.trainable:
            if part == "both" and table.pixels is None:
                table.pixels = load_pixels(rows["path"].to_pylist(), base)
            variants.append((f"trainable_{part}", f"trainable towers: {part}", reflective_of, drop_main, part))
    out = [_row("zero_shot", "base CLIP, no fine-tuning", None, [{"validation": reflective["validation_zero_shot"]}])]
    for name, report in (("contrastive", contrastive), ("reflective", reflective)):
        out.append(
            _row(name, f"main {name} retriever (lr {report['chosen_lr']:g})", report["chosen_lr"], report["seeds"])
        )
        by_lr: dict[float, list[dict]] = {}
        for g in report["lr_grid"]:
            by_lr.setdefault(g["lr"], []).append(g)
        for lr_, fits in by_lr.items():
            seeds = ", ".join(str(g["seed"]) for g in fits)
            label = f"{name}, lr grid, seed{'s' if len(fits) > 1 else ''} {seeds}"
            out.append(_row(f"{name}_lr_{lr_:g}", label, lr_, fits))
    for name, changed, negatives_of, drop, trainable in variants:
        runs = []
        for seed in a.seeds:
            _, run = fit_one(
                cfg,
                base_folder,
                train,
                val,
                table=table,
                negatives_of=negatives_of,
                drop_positive=drop,
                lr=lr,
                seed=seed,
                trainable=trainable,
            )
            runs.append(run)
            if progress:
                progress(name, seed)
        row = _row(name, changed, lr, runs)
        row["negatives_per_prompt"] = float(np.mean([len(v) for v in negatives_of.values()])) if negatives_of else 0.0
        out.append(row)
    return out


def _row(name: str, changed: str, lr: float | None, runs: Sequence[dict]) -> dict:
    v = mean_validation(runs)
    top1, top5 = validation_score(v)
    row = {
        "variant": name,
        "changed": changed,
        "lr": lr,
        "seeds": len(runs),
        "val_top1": top1,
        "val_top5": top5,
        "val_top1_min": None,
        "val_top1_max": None,
        "negatives_per_prompt": None,
    }
    if len(runs) > 1:
        pooled = [validation_score(r["validation"])[0] for r in runs]
        row["val_top1_min"], row["val_top1_max"] = min(pooled), max(pooled)
    n = sum(m["queries"] for m in v.values())
    row["val_mrr"] = sum(m.get("mrr", 0.0) * m["queries"] for m in v.values()) / n if n else 0.0
    for split in ("known", "novel"):
        m = v.get(split, {})
        row[f"{split}_top1"], row[f"{split}_top5"], row[f"{split}_queries"] = (
            m.get("top1"),
            m.get("top5"),
            m.get("queries"),
        )
    return row


def write_ablations(rows: list[dict], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "retriever_ablations.parquet")
    lines = [
        "| variant | what changed | lr | seeds | val top-1 (all) [seed range] | top-5 | MRR | known top-1 | novel top-1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for r in rows:
        spread = f" [{r['val_top1_min']:.3f}, {r['val_top1_max']:.3f}]" if r["val_top1_min"] is not None else ""
        lr = "-" if r["lr"] is None else format(r["lr"], "g")
        lines.append(
            f"| {r['variant']} | {r['changed']} | {lr} | {r['seeds']} | "
            f"{r['val_top1']:.3f}{spread} | {r['val_top5']:.3f} | {r['val_mrr']:.3f} | {f(r['known_top1'])} (n={r['known_queries'] or 0}) | "
            f"{f(r['novel_top1'])} (n={r['novel_queries'] or 0}) |"
        )
    md = folder / "retriever_ablations.md"
    md.write_text("\n".join(lines) + "\n")
    chart = folder / "retriever_ablations.png"
    _chart([r for r in rows if "_lr_" not in r["variant"]], chart)
    return {"parquet": folder / "retriever_ablations.parquet", "md": md, "chart": chart}


def _chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 3.4), dpi=100)
    x = np.arange(len(rows))
    vals = [r["val_top1"] for r in rows]
    lo = [r["val_top1"] - (r["val_top1_min"] if r["val_top1_min"] is not None else r["val_top1"]) for r in rows]
    hi = [(r["val_top1_max"] if r["val_top1_max"] is not None else r["val_top1"]) - r["val_top1"] for r in rows]
    ax.bar(x, vals, yerr=[lo, hi], capsize=4, color=["#999"] + ["#6a9fd4"] * (len(rows) - 1))
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("validation text->image top-1")
    ax.set_title("retriever variants on validation prompts (bars: seed range)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
