"""What the field does to make a retriever fine-tune generalise to concepts it never trained on (issue 17, item 3),
measured on validation prompts only, under the unseen_concepts protocol, on a materialized profile.

Each variant is the contrastive retriever's recipe (no reflective negatives: the question is the fine-tune
itself) with one thing changed; every variant runs the same seeds, and the table says how each compares with
the zero-shot base on the same validation prompts. Nothing here reads evaluation prompts.

    REALRAG_CONFIG=configs/demo_study.yaml .venv/bin/python bench/retriever_generalisation.py --seeds 0 1 2

Writes ``bench/results/retriever_generalisation.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from realrag_core.clip.bundle import load_clip  # noqa: E402
from realrag_core.config.loading import load_config  # noqa: E402
from realrag_core.clip.demo_pretrain import base_clip_records, load_images  # noqa: E402
from realrag_core.data.prompts import Prompt, of_protocol, load_prompts, prompt_id  # noqa: E402
from realrag_core.retriever.fit import TableView, fit_one, table_view, validate, validation_score  # noqa: E402
from realrag_core.data.sources.registry import iter_records  # noqa: E402
from realrag_core.data.world import load_world  # noqa: E402
from realrag_core.storage.store import ArtifactStore  # noqa: E402
from realrag_core.embed.table import VECTOR_COLUMN, open_table_readonly, read_rows  # noqa: E402


def more_templates(train, templates):
    """The training prompts again under more templates (their concepts unchanged)."""
    out = list(train)
    for p in train:
        for t in templates:
            if t != p.template:
                text = t.format(concept=p.concept)
                out.append(dataclasses.replace(p, prompt_id=prompt_id(text, p.concept), prompt=text, template=t))
    return out


def replay_pairs(cfg, store, base, table, template):
    """Pre-training pairs replayed during the fine-tune: the database artist's images of concepts outside the
    world and the selection (pairs the base CLIP pre-trained on), embedded by the base image tower and appended to
    the table the fine-tune draws positives from, each with a training prompt. World concepts are not replayed."""
    world = load_world(store.world_dir)
    database = set(cfg.world.styles.database)
    records = [r for r in base_clip_records(cfg, world, list(iter_records(cfg.source))) if r.style in database]
    images, kept = load_images(records)
    emb = base.embed_images(images)
    concepts = [r.concept for r in kept]
    augmented = TableView(
        table.ids + [f"replay:{r.path.name}:{i}" for i, r in enumerate(kept)],
        table.concepts + concepts,
        torch.cat([table.embeddings, emb]),
    )
    prompts = []
    for c in sorted(set(concepts)):
        text = template.format(concept=c)
        prompts.append(Prompt(prompt_id(text, c), text, c, "novel", "train", template))
    return prompts, augmented


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=os.environ.get("REALRAG_CONFIG", str(ROOT / "configs" / "demo.yaml")))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    store = ArtifactStore(cfg.artifacts_root)
    prompts = of_protocol(load_prompts(store.world_dir), "unseen_concepts")
    train = [p for p in prompts if p.retriever_split == "train"]
    val = [p for p in prompts if p.retriever_split == "val"]
    rows = read_rows(
        open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name),
        ("id", "concept", "style", "path", VECTOR_COLUMN),
    )
    table = table_view(rows)
    report = json.loads((store.checkpoint_dir("contrastive_retriever") / "retriever.json").read_text())
    lr = report["chosen_lr"]
    base = load_clip(store.clip_dir, cfg.device, cfg.precision)
    zero = validation_score(validate(base, val, table))[0]
    replay, replay_table = replay_pairs(cfg, store, base, table, cfg.prompts.templates[0])
    r = cfg.retriever
    captions = tuple(cfg.clip.train.captions) if hasattr(cfg.clip, "train") else ("{concept}",)
    variants = [
        ("recipe", f"the contrastive recipe (lr {lr:g}, {r.steps} steps, text tower)", {}, train),
        ("lower_lr", f"lr {lr / 3:g}", {"lr": lr / 3}, train),
        ("early_stopping", "validate every 25 steps, keep the best (never step 0)", {"validate_every": 25}, train),
        (
            "longer_early_stopping",
            f"{2 * r.steps} steps, validate every 25, keep the best",
            {"validate_every": 25, "steps": 2 * r.steps},
            train,
        ),
        (
            "projection_only",
            "only the final norm and text projection train (text_head)",
            {"trainable": "text_head"},
            train,
        ),
        ("image_to_text", "the image->text term of the loss kept", {"image_to_text": True}, train),
        (
            "more_templates",
            f"training prompts under the base CLIP's captions too ({', '.join(captions)})",
            {},
            more_templates(train, captions),
        ),
        (
            "replay",
            f"pre-training pairs replayed: the database artist's {len(replay_table.ids) - len(table.ids)} images of "
            f"{len(replay)} concepts outside the world, beside the training prompts",
            {"table": replay_table},
            train + replay,
        ),
    ]
    out = {
        "config": args.config,
        "protocol": "unseen_concepts",
        "zero_shot_val_top1": zero,
        "val_prompts": len(val),
        "seeds": args.seeds,
        "variants": [],
    }
    for name, changed, update, train_prompts in variants:
        cfg_v = cfg.model_copy(
            update={"retriever": r.model_copy(update={k: v for k, v in update.items() if k not in ("lr", "table")})}
        )
        scores, steps, start = [], [], time.perf_counter()
        for seed in args.seeds:
            train_table = update.get("table", table)
            model, run = fit_one(
                cfg_v,
                store.clip_dir,
                train_prompts,
                val,
                table=train_table,
                negatives_of={},
                drop_positive=False,
                lr=update.get("lr", lr),
                seed=seed,
            )
            if train_table is not table:  # validated against the database alone, like every other variant
                run["score"] = validation_score(validate(model, val, table))[0]
            scores.append(run["score"])
            steps.append(run["kept_step"])
        row = {
            "variant": name,
            "changed": changed,
            "val_top1": float(np.mean(scores)),
            "min": min(scores),
            "max": max(scores),
            "minus_zero_shot": float(np.mean(scores)) - zero,
            "kept_steps": steps,
            "train_prompts": len(train_prompts),
            "seconds": round(time.perf_counter() - start, 1),
        }
        out["variants"].append(row)
        print(json.dumps(row), flush=True)
    folder = ROOT / "bench" / "results"
    (folder / "retriever_generalisation.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"zero-shot validation top-1 {zero:.3f} (n={len(val)} prompts, unseen_concepts); seeds {args.seeds}",
        "",
        "| variant | what changed | val top-1 (mean) [seed range] | minus zero-shot | kept steps |",
        "|---|---|---|---|---|",
    ]
    for v in out["variants"]:
        lines.append(
            f"| {v['variant']} | {v['changed']} | {v['val_top1']:.3f} [{v['min']:.3f}, {v['max']:.3f}] | "
            f"{v['minus_zero_shot']:+.3f} | {', '.join(map(str, v['kept_steps']))} |"
        )
    (folder / "retriever_generalisation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
