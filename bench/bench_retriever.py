"""Benchmark: retriever training with cached image features against recomputing the image tower, side by side.

On the demo world that README command 1 built (its base CLIP, table, prompts and reflective negatives), the
`retriever` asset's training (text tower, reflective loss, the demo's batch size and chosen learning rate,
first seed) runs three ways:
- cached: image features read from the LanceDB table (what the asset does: the image tower is frozen);
- recomputed: the same frozen image tower run on every positive and negative at every step (the same features,
  so the same trajectory: the script checks the losses agree);
- both towers: `retriever.trainable: both` (the image tower trains too, so features cannot be cached).
Reported: samples/s of each, and the training time (validation excluded) until the validation top-1 (pooled over
known and novel prompts, as the learning-rate grid scores) first reaches the accuracy the demo's retriever
reached with that learning rate and seed. Writes bench/results/retriever_training.json.

    .venv/bin/python bench/bench_retriever.py [--config configs/demo.yaml] [--every 20] [--both-steps 40]
"""

from __future__ import annotations

import argparse
import json
import time

import pyarrow.parquet as pq
import torch

from _results import write
from realrag_core.clip.bundle import load_clip
from realrag_core.config.loading import load_config
from realrag_core.data.prompts import load_prompts
from realrag_core.retriever.fit import (
    TableView,
    load_pixels,
    negatives_by_prompt,
    table_view,
    train_retriever,
    validate,
    validation_score,
)
from realrag_core.storage.store import ArtifactStore
from realrag_core.embed.table import VECTOR_COLUMN, open_table_readonly, read_rows


class RecomputedFeatures:
    """Indexed like the cached feature tensor, but runs the frozen image tower on the rows' pixels each time."""

    def __init__(self, clip, pixels: torch.Tensor):
        self.clip, self.pixels = clip, pixels

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            flat = rows.reshape(-1)
            return self.clip.embed_pixels(self.pixels[flat]).reshape(*rows.shape, -1)


def run(arm: str, cfg, store: ArtifactStore, data: dict, steps: int, every: int, target: float | None) -> dict:
    """Train one arm for ``steps``; validate every ``every`` steps (timed apart). Returns rate, losses, and when
    the target was first reached."""
    r = cfg.retriever
    clip = load_clip(store.clip_dir, cfg.device, cfg.precision)
    table = data["table"]
    if arm == "recomputed":
        table = TableView(table.ids, table.concepts, RecomputedFeatures(clip, data["pixels"]))
    elif arm == "both":
        table = TableView(table.ids, table.concepts, table.embeddings, data["pixels"])
    state = {"val_seconds": 0.0, "curve": [], "reached": None, "start": time.perf_counter()}

    def on_step(step: int, loss: float) -> None:
        if not every or (step + 1) % every and step + 1 != steps:
            return
        t0 = time.perf_counter()
        clip.model.eval()
        val_table = data["table"]
        if arm == "both":  # the image tower changed: validate against the table as it now embeds it
            pixels = data["pixels"]
            val_table = TableView(
                val_table.ids,
                val_table.concepts,
                torch.cat([clip.embed_pixels(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]),
            )
        score = validation_score(validate(clip, data["val"], val_table))[0]
        clip.model.train()
        state["val_seconds"] += time.perf_counter() - t0
        train_s = time.perf_counter() - state["start"] - state["val_seconds"]
        state["curve"].append({"step": step + 1, "train_seconds": round(train_s, 2), "val_top1": score})
        if target is not None and state["reached"] is None and score >= target - 1e-9:
            state["reached"] = {"step": step + 1, "train_seconds": round(train_s, 2)}

    losses = train_retriever(
        clip,
        data["train"],
        table,
        data["negatives_of"],
        steps=steps,
        batch_size=r.batch_size,
        lr=data["lr"],
        seed=data["seed"],
        mask_same_concept=r.mask_same_concept,
        image_to_text=r.image_to_text,
        drop_positive_negatives=data["drop_positive"],
        on_step=on_step,
        trainable="both" if arm == "both" else "text",
    )
    train_s = time.perf_counter() - state["start"] - state["val_seconds"]
    out = {
        "steps": steps,
        "train_seconds": round(train_s, 2),
        "samples_per_s": round(steps * r.batch_size / train_s, 1),
        "final_loss": losses[-1],
        "losses": losses,
        "curve": state["curve"],
        "reached": state["reached"],
    }
    print(
        f"{arm:10s} {out['samples_per_s']:8.1f} samples/s over {steps} steps; target reached: {state['reached']}",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None, help="the profile whose artifacts are used (default: the demo)")
    parser.add_argument("--every", type=int, default=20, help="validate every this many steps")
    parser.add_argument("--both-steps", type=int, default=40, help="steps timed for the both-towers arm")
    args = parser.parse_args()
    cfg = load_config(args.config)
    store = ArtifactStore(cfg.artifacts_root)
    report = store.read_report("retriever")
    if report is None:
        raise SystemExit(f"no retriever report under {cfg.artifacts_root}: run README command 1 first")
    table = open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)
    rows = read_rows(table, ("id", "concept", "path", VECTOR_COLUMN))
    prompts = load_prompts(store.world_dir)
    base = load_clip(store.clip_dir, cfg.device, cfg.precision)
    lr, seed = report["chosen_lr"], cfg.retriever.seeds[0]
    demo = next(g for g in report["lr_grid"] if g["lr"] == lr and g["seed"] == seed)
    data = {
        "table": table_view(rows),
        "pixels": load_pixels(rows["path"].to_pylist(), base),
        "lr": lr,
        "seed": seed,
        "train": [p for p in prompts if p.retriever_split == "train"],
        "val": [p for p in prompts if p.retriever_split == "val"],
        "negatives_of": negatives_by_prompt(pq.read_table(store.negatives_path).to_pylist()),
        "drop_positive": cfg.mining.policy == "exclude_positive",
    }
    check = RecomputedFeatures(base, data["pixels"])[torch.arange(64)]
    feature_gap = float((check - data["table"].embeddings[:64]).abs().max())
    steps, target = cfg.retriever.steps, demo["score"]
    print(
        f"demo: lr {lr:g}, seed {seed}, {steps} steps, batch {cfg.retriever.batch_size}: validation top-1 "
        f"{target:.3f} in the asset's run; cached vs recomputed features differ by at most {feature_gap:.1e}"
    )
    cached = run("cached", cfg, store, data, steps, args.every, target)
    stop = (cached["reached"] or {"step": steps})["step"]
    recomputed = run("recomputed", cfg, store, data, stop, args.every, target)
    both = run("both", cfg, store, data, args.both_steps, 0, None)
    loss_gap = max(abs(a - b) for a, b in zip(cached["losses"], recomputed["losses"]))
    print(f"largest loss difference cached vs recomputed over {stop} steps: {loss_gap:.2e}")
    reached = cached["reached"] and recomputed["reached"]
    ratios = {
        "samples/s cached / recomputed image tower": (cached["samples_per_s"] / recomputed["samples_per_s"], None),
        "samples/s cached / both towers trained": (cached["samples_per_s"] / both["samples_per_s"], None),
    }
    if reached:
        ratios["time to demo val top-1: recomputed / cached"] = (
            recomputed["reached"]["train_seconds"] / cached["reached"]["train_seconds"],
            None,
        )
    for arm in (cached, recomputed, both):
        arm.pop("losses")
    write(
        "retriever_training",
        "Retriever training",
        {
            "config": args.config or "configs/demo.yaml",
            "lr": lr,
            "seed": seed,
            "steps": steps,
            "batch_size": cfg.retriever.batch_size,
            "validate_every": args.every,
            "both_steps": args.both_steps,
            "table_rows": len(data["table"].ids),
            "train_prompts": len(data["train"]),
            "val_prompts": len(data["val"]),
        },
        {
            "demo_val_top1": target,
            "feature_gap": feature_gap,
            "loss_gap": loss_gap,
            "cached": cached,
            "recomputed": recomputed,
            "both": both,
        },
        ratios,
        notes="" if reached else "the demo's validation top-1 was not reached again within the demo's steps",
    )
    print(json.dumps({"cached_reached": cached["reached"], "recomputed_reached": recomputed["reached"]}))


if __name__ == "__main__":
    main()
