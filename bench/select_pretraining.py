"""Choose the demo's pre-training recipes (base CLIP, judge) on the selection concepts, never on the world's.

The selection concepts (``world.selection_concepts``, chosen by seed among the concepts outside the world) are
treated exactly like world concepts by the model being chosen: the base CLIP never sees their database-style
images, the judge never their reference-style images. A candidate is trained with the profile's data rules
(``base_clip_records`` / ``judge_records``) and scored on those held-out images every ``--eval-every`` steps:

    python bench/select_pretraining.py --model clip --name vit_hflip --train '{"steps": 1600, "hflip": 0.5}'
    python bench/select_pretraining.py --model judge --name vit --arch '{"vision_width": 192}'
    python bench/select_pretraining.py --model clip --name rn64 --arch '{"vision_layers": [1, 1, 1, 1], "vision_width": 16, "image_size": 64}'
    python bench/select_pretraining.py table      # every recorded candidate as a markdown table

Each run writes ``bench/results/selection/<model>_<name>.json`` (recipe, training-set size, the trajectory of
selection scores, seconds) and, with ``--save DIR``, the weights (open_clip local-dir format, with the
training key), so the chosen run can be shipped as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from realrag_core.clip.bundle import ClipBundle, create_untrained, save_clip, train_clip, TRAINING_FILE  # noqa: E402
from realrag_core.clip.demo_pretrain import (  # noqa: E402
    base_clip_records,
    judge_records,
    load_images,
    selection_scores,  # noqa: E402
    training_key,
)
from realrag_core.config.loading import load_config  # noqa: E402
from realrag_core.data.sources.registry import iter_records  # noqa: E402
from realrag_core.data.world import compute_world  # noqa: E402


def results_table(folder: Path) -> str:
    """Every recorded candidate as a markdown table: recipe changes, training set, score along the way."""
    lines = [
        "| model | candidate | steps | train images | selection score at 400 / 800 / 1,200 / 1,600 ... (final, 95%) | final loss | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        metric = "top1" if r["model"] == "clip" else "acc"
        lo, hi = ("top1_lo", "top1_hi") if r["model"] == "clip" else ("lo", "hi")
        points = " / ".join(f"{p[metric]:.3f}" for p in r["trajectory"])
        last = r["trajectory"][-1]
        lines.append(
            f"| {r['model']} | {r['name']} | {r['train']['steps']} | {r['train_images']} | {points} "
            f"[{last[lo]:.2f}, {last[hi]:.2f}] | {r['final_loss']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["table"]:
        print(results_table(Path(os.environ.get("REALRAG_BENCH_RESULTS", ROOT / "bench" / "results")) / "selection"))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--model", choices=("clip", "judge"), required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--arch", default="{}", help="JSON overrides of the model's architecture")
    parser.add_argument("--train", default="{}", help="JSON overrides of its training settings")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    section = cfg.clip if args.model == "clip" else cfg.judge
    # validated, unlike model_copy(update=...): a ResNet's vision_layers becomes a tuple and bad sizes are refused
    arch = type(section.architecture).model_validate(section.architecture.model_dump() | json.loads(args.arch))
    train = type(section.train).model_validate(section.train.model_dump() | json.loads(args.train))
    seed = args.seed if args.seed is not None else (cfg.world.seed if args.model == "clip" else cfg.judge.seed)
    records = list(iter_records(cfg.source))
    world = compute_world(records, cfg.world)
    chosen = (base_clip_records if args.model == "clip" else judge_records)(cfg, world, records)
    images, kept = load_images(chosen)
    folder = args.save or Path("/tmp") / f"select_{args.model}_{args.name}"
    model, train_tf, eval_tf, tokenizer = create_untrained(folder, arch, seed, train.open_clip_aug_cfg())
    cache: dict = {}
    trajectory = []
    bar = tqdm(total=train.steps, desc=f"{args.model}:{args.name}", unit="step", mininterval=30)
    start = time.perf_counter()

    def score(step: int, loss: float) -> None:
        model.eval()
        bundle = ClipBundle(model, eval_tf, tokenizer, "candidate")
        s = selection_scores(bundle, cfg, world, records, args.model, cached=cache)
        model.train()
        point = {
            "step": step,
            "loss": loss,
            "seconds": round(time.perf_counter() - start, 1),
            **{
                k: v
                for k, v in s.items()
                if k in ("top1", "top1_lo", "top1_hi", "top5", "mrr", "acc", "lo", "hi", "n", "queries", "images")
            },
        }
        trajectory.append(point)
        print(json.dumps(point), flush=True)

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if (step + 1) % args.eval_every == 0 or step + 1 == train.steps:
            score(step + 1, loss)

    losses = train_clip(
        model,
        tokenizer,
        train_tf,
        images=images,
        concepts=[r.concept for r in kept],
        cfg=train,
        seed=seed,
        on_step=on_step,
    )
    bar.close()
    if train.average_from is not None:  # the last point above is the last step's weights; the kept model is the average
        score(train.steps, losses[-1])
        trajectory[-1]["averaged_from_step"] = int(train.steps * train.average_from)
    result = {
        "model": args.model,
        "name": args.name,
        "architecture": arch.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "train_images": len(kept),
        "train_concepts": len({r.concept for r in kept}),
        "train_styles": sorted({r.style for r in kept}),
        "selection_concepts": len(world.selection),
        "trajectory": trajectory,
        "final_loss": losses[-1],
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if args.save:
        key = training_key(arch, train, seed, kept)
        model_id = save_clip(model, folder)
        (folder / TRAINING_FILE).write_text(
            json.dumps(
                {
                    "key": key,
                    "model_id": model_id,
                    "train_seconds": result["seconds"],
                    "train_images": len(kept),
                    "train_concepts": result["train_concepts"],
                    "train_styles": result["train_styles"],
                    "params": result["params"],
                    "final_loss": losses[-1],
                    "losses": losses,
                    "selection": trajectory[-1],
                }
            )
        )
        result["saved"] = {"folder": str(folder), "key": key, "model_id": model_id}
    out = Path(os.environ.get("REALRAG_BENCH_RESULTS", ROOT / "bench" / "results")) / "selection"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.model}_{args.name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "trajectory"} | {"last": trajectory[-1]}, indent=1))


if __name__ == "__main__":
    main()
