"""Stage 4: building a retriever asset's models: the learning rate chosen on validation prompts, one model per seed,
written into a staging folder and swapped in whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence
from realrag_core.clip.bundle import ClipBundle, load_clip
from realrag_core.data.prompts import Prompt
from realrag_core.retriever.checkpoint import RETRIEVER_FILE, save_retriever
from realrag_core.retriever.fit_cache import FitCache, fit_inputs_digest
from realrag_core.retriever.fit import (
    fit_one,
    load_pixels,
    mean_validation,
    negatives_by_prompt,
    table_view,
    validate,
    validation_score,
)


def build_retriever(
    cfg,
    base_folder: Path,
    prompts: Sequence[Prompt],
    rows,
    *,
    table_version: int,
    negatives_rows: list[dict] | None,
    out_folder: Path,
    plot: Path,
    title: str,
    reembed: Callable[[ClipBundle], tuple[str, int]] | None = None,
    negatives_version: str | None = None,
) -> dict:
    """Train one retriever per seed (reflective when ``negatives_rows`` is given, the contrastive baseline when
    None). The learning rate is chosen on validation prompts from ``retriever.lr_grid`` by the mean score of
    the first ``retriever.lr_choice_seeds`` seeds (by default the first seed alone); the same code and grid
    serve both retrievers, so they get the same tuning budget. Each seed's model is
    saved in ``out_folder/seed_<s>``; the report holds the grid, every seed's validation next to the zero-shot
    base, and their mean. With ``retriever.trainable == "both"`` each model's image tower changed, so
    ``reembed(model) -> (table name, version)`` writes the database embedded by it, and the model records it."""
    from realrag_core.evaluate.plots import line_plot

    r = cfg.retriever
    table = table_view(rows)
    base = load_clip(base_folder, cfg.device, cfg.precision)  # read-only here: every fit loads its own fresh copy
    if r.trainable == "both":
        if reembed is None:
            raise ValueError("retriever.trainable 'both' needs a way to re-embed the table (reembed=...)")
        table.pixels = load_pixels(rows["path"].to_pylist(), base)
    train = [p for p in prompts if p.retriever_split == "train"]
    val = [p for p in prompts if p.retriever_split == "val"]
    protocols = {p.protocol for p in prompts}
    if len(protocols) > 1:
        raise ValueError(f"one retriever is trained on one protocol's prompts, not {sorted(protocols)}")
    rates = r.learning_rates_for(protocols.pop() if protocols else "unseen_concepts")
    if not val and len(rates) > 1:
        raise ValueError("retriever.lr_grid needs validation prompts (prompts.split_fractions gives none)")
    zero_shot = validate(base, val, table)
    negatives_of = negatives_by_prompt(negatives_rows) if negatives_rows is not None else {}
    drop_positive = cfg.mining.policy == "exclude_positive"
    # every finished fit is kept in a sibling folder until the new retrievers are in place: a run killed half-way
    # resumes after its last finished fit instead of starting over (only fits of the very same inputs are reused)
    fits = FitCache(
        out_folder.with_name(out_folder.name + ".fits"),
        base_folder,
        cfg,
        fit_inputs_digest(cfg, base, train, val, table=table, negatives_of=negatives_of, drop_positive=drop_positive),
    )

    def fit(lr: float, seed: int) -> tuple[ClipBundle, dict]:
        return fits.get(
            lr,
            seed,
            lambda: fit_one(
                cfg,
                base_folder,
                train,
                val,
                table=table,
                negatives_of=negatives_of,
                drop_positive=drop_positive,
                lr=lr,
                seed=seed,
            ),
        )

    choosers = r.seeds[: r.lr_choice_seeds]
    grid, scores, best = [], [], None
    for lr in rates:
        fitted = [fit(lr, s) for s in choosers]
        grid.extend({k: v for k, v in run.items() if k != "losses"} for _, run in fitted)
        keys = [validation_score(run["validation"]) for _, run in fitted]
        key = tuple(sum(part) / len(part) for part in zip(*keys))  # mean top-1, then mean top-5, over the seeds
        scores.append({"lr": lr, "seeds": list(choosers), "top1": key[0], "top5": key[1]})
        if best is None or key > best[0]:
            best = (key, fitted)  # only the best rate's models stay in memory
    _, runs = best
    chosen_lr = runs[0][1]["lr"]
    runs = runs + [fit(chosen_lr, s) for s in r.seeds[len(choosers) :]]
    # written into a staging folder and swapped in at the end: a run killed half-way leaves the previous
    # retrievers whole (in the instant between the two renames, as <folder>.old, which readers fall back to),
    # never a mix or half a file
    final, out_folder = out_folder, out_folder.with_name(out_folder.name + ".partial")
    shutil.rmtree(out_folder, ignore_errors=True)
    common = {
        "reflective": negatives_rows is not None,
        "train_prompts": len(train),
        "val_prompts": len(val),
        "negatives_per_prompt": max((len(v) for v in negatives_of.values()), default=0),
        "table_version": table_version,
        "negatives_version": negatives_version,
        "base_model_id": base.model_id,
        "settings": r.model_dump(mode="json"),
        "negative_policy": cfg.mining.policy,
        "chosen_lr": chosen_lr,
        "validation_zero_shot": zero_shot,
    }
    seeds = []
    for model, run in runs:
        info = {**common, **{k: v for k, v in run.items() if k != "score"}}
        folder = out_folder / f"seed_{run['seed']}"
        info["model_id"] = model.model_id = save_retriever(model, base_folder, folder, info)
        info["table_name"], info["search_table_version"] = (
            reembed(model) if r.trainable == "both" else (None, table_version)
        )
        (folder / RETRIEVER_FILE).write_text(json.dumps(info, indent=2))
        seeds.append(
            {
                k: v
                for k, v in info.items()
                if k
                in (
                    "seed",
                    "model_id",
                    "train_seconds",
                    "final_loss",
                    "validation",
                    "table_name",
                    "search_table_version",
                )
            }
        )
    loss_label = (
        "self-reflective contrastive loss"
        if negatives_rows is not None
        else "contrastive loss (no reflective negatives)"
    )
    line_plot(runs[0][1]["losses"], plot, f"{title}: {loss_label}, lr {chosen_lr:g}, seed {r.seeds[0]}", "step", "loss")
    report = {
        **common,
        "lr_grid": grid,
        "lr_choice": scores,
        "seeds": seeds,
        "validation": mean_validation([run for _, run in runs]),
        "train_seconds": round(
            sum(g["train_seconds"] for g in grid) + sum(run["train_seconds"] for _, run in runs[len(choosers) :]), 2
        ),
    }
    (out_folder / RETRIEVER_FILE).write_text(json.dumps(report, indent=2))
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    out_folder.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    fits.clear()
    return {**report, "resumed_fits": fits.resumed}


def ablation_protocol(cfg) -> str:
    """Ablations and controls run under one protocol: unseen_concepts when it runs, else seen_concepts."""
    return "unseen_concepts" if "unseen_concepts" in cfg.prompts.protocols else cfg.prompts.protocols[0]
