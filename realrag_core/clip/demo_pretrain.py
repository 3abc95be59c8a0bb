"""Train (or reuse) the demo's open_clip models and measure them.

Two models come from the same code with different data and seeds:
- the base CLIP (``clip_backbone``): pre-training styles only, so it is a genuine zero-shot retriever on the
  database images, which it never saw;
- the judge (``judge``): every real image and caption, reference style included, used only for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from realrag_core.clip.bundle import (
    CONFIG_NAME,
    TRAINING_FILE,
    WEIGHTS_NAME,
    ClipBundle,
    create_untrained,
    load_clip,
    model_id_of,
    retrieval_accuracy,
    save_clip,
    train_clip,
    zero_shot_report,
)
from realrag_core.clip.pretrained import materialize_pretrained
from realrag_core.config.clip import ClipArchitecture, ClipTrainConfig, PretrainedClipConfig
from realrag_core.data.image_io import DecodeLimits, decode_image
from realrag_core.evaluate.plots import line_plot
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.data.sources.registry import iter_records
from realrag_core.evaluate.stats import wilson_interval
from realrag_core.data.world import World

CEILING_FILE = "ceiling.json"  # in the judge's checkpoint folder


def training_key_of(folder: Path) -> str:
    """The training key stored beside weights made by :func:`train_or_reuse`."""
    path = folder / TRAINING_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAINING_FILE} in {folder}: materialize the model's asset first")
    return json.loads(path.read_text())["key"]


def load_images(records: Sequence[ImageRecord]):
    """Decoded RGB images of the records that decode (the rest are skipped here; stage 1 records rejects)."""
    images, kept = [], []
    for r in records:
        try:
            img, _ = decode_image(r.path.read_bytes(), DecodeLimits())
        except OSError:
            img = None
        if img is not None:
            images.append(img)
            kept.append(r)
    return images, kept


def training_key(arch: ClipArchitecture, train: ClipTrainConfig, seed: int, records: Sequence[ImageRecord]) -> str:
    """What the weights depend on: architecture, training settings, seed and the exact training pairs."""
    h = hashlib.sha256(json.dumps([arch.model_dump(mode="json"), train.key_dump(), seed]).encode())
    for r in records:
        h.update(f"{r.path.name}\t{r.caption}\t{r.style}\t{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def train_or_reuse(
    arch: ClipArchitecture,
    train: ClipTrainConfig,
    seed: int,
    *,
    records: Sequence[ImageRecord],
    folder: Path,
    plot: Path,
    title: str,
    force: bool = False,
) -> dict:
    """Weights in ``folder`` for exactly these inputs are reused; otherwise train with ClipLoss and save."""
    key = training_key(arch, train, seed, records)
    meta_path = folder / TRAINING_FILE
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if (
        not force
        and previous.get("key") == key
        and (folder / WEIGHTS_NAME).is_file()
        and previous.get("model_id") == model_id_of(folder / WEIGHTS_NAME)
    ):
        return {**previous, "reused": True}
    images, kept = load_images(records)
    model, train_tf, _, tokenizer = create_untrained(folder, arch, seed, train.open_clip_aug_cfg())
    start = time.perf_counter()
    bar = tqdm(total=train.steps, desc=title, unit="step")

    def on_step(step, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

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
    info = {
        "key": key,
        "model_id": save_clip(model, folder),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_images": len(kept),
        "train_concepts": len({r.concept for r in kept}),
        "train_styles": sorted({r.style for r in kept}),
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": losses[-1],
        "losses": losses,
    }
    meta_path.write_text(json.dumps(info))
    line_plot(losses, plot, f"{title} (open_clip ClipLoss)", "step", "loss")
    return {**info, "reused": False}


def base_clip_records(cfg, world: World, records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """What the base CLIP pre-trains on: every image in a ``clip_pretrain`` style (artists that draw neither the
    database nor the reference), plus the ``outside_world`` styles' images of concepts that are neither world
    nor selection concepts. So no image of a world (or selection) concept by the database artist is ever seen."""
    roles = cfg.world.styles
    held = set(world.concepts) | set(world.selection)
    return [
        r
        for r in records
        if r.style in roles.clip_pretrain or (r.style in roles.outside_world and r.concept not in held)
    ]


def judge_records(cfg, world: World, records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """What the judge trains on: every real image except the reference style's images of world and selection
    concepts, on which its ceiling is measured."""
    ref = cfg.world.styles.reference
    held = set(world.concepts) | set(world.selection)
    return [r for r in records if not (r.style == ref and r.concept in held)]


def held_out_images(concepts, records: Sequence[ImageRecord], styles) -> tuple[list, list[str]]:
    """Decoded images of ``concepts`` in ``styles`` and their concepts."""
    wanted, styles = set(concepts), set(styles)
    images, kept = load_images([r for r in records if r.style in styles and r.concept in wanted])
    return images, [r.concept for r in kept]


def selection_scores(
    bundle: ClipBundle,
    cfg,
    world: World,
    records: Sequence[ImageRecord],
    which: str,
    *,
    cached: dict | None = None,
) -> dict:
    """The score a pre-training recipe is chosen by, on the selection concepts (never the world's):
    ``clip``: text->image top-1 among the selection concepts' database-style images (zero-shot: the base CLIP
    never saw them); ``judge``: top-1 concept among the selection concepts of their reference-style images."""
    if not world.selection:
        raise ValueError("world.selection_concepts is 0: there are no selection concepts to measure on")
    roles = cfg.world.styles
    styles = roles.database if which == "clip" else (roles.reference,)
    key = (which, tuple(styles))
    if cached is not None and key in cached:
        images, concepts = cached[key]
    else:
        images, concepts = held_out_images(world.selection, records, styles)
        if cached is not None:
            cached[key] = (images, concepts)
    caption = cfg.clip.eval_caption
    if which == "clip":
        image_emb = bundle.embed_images(images)
        queries = sorted(set(concepts))
        text_emb = bundle.embed_texts([caption.format(concept=c) for c in queries])
        return {
            **retrieval_accuracy(text_emb, queries, image_emb, concepts),
            "queries": len(queries),
            "images": len(images),
        }
    return {**accuracy(classify(bundle, images, sorted(world.selection), caption), concepts), "images": len(images)}


@torch.no_grad()
def classify(bundle: ClipBundle, images, concepts: Sequence[str], caption: str) -> list[str]:
    """Image -> the concept whose caption embedding is nearest (the judge's top-1 concept)."""
    text = bundle.embed_texts([caption.format(concept=c) for c in concepts])
    image = bundle.embed_images(list(images))
    return [concepts[i] for i in (image @ text.T).argmax(dim=1).tolist()]


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> dict:
    hits = sum(p == t for p, t in zip(predicted, truth))
    n = len(truth)
    lo, hi = wilson_interval(hits, n)
    return {"acc": hits / n if n else 0.0, "lo": lo, "hi": hi, "n": n}


def take_shipped(shipped: Path | None, key: str, folder: Path, force: bool) -> bool:
    """Copy weights shipped with the repository into ``folder`` when they were made for exactly this recipe and
    data (their stored training key); a different key is refused, and the asset trains instead."""
    if force or not shipped or not (shipped / TRAINING_FILE).is_file():
        return False
    made_for = training_key_of(shipped)
    if made_for != key:
        print(
            f"[{folder.name}] shipped weights in {shipped} were made for another recipe or data "
            f"({made_for} != {key}): refusing them and training"
        )
        return False
    if shipped.resolve() != folder.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME, TRAINING_FILE):
            shutil.copy2(shipped / name, folder / name)
    return True


def _train_demo_model(spec, seed: int, train_records, folder: Path, plot: Path, title: str, force: bool) -> dict:
    key = training_key(spec.architecture, spec.train, seed, train_records)
    shipped = take_shipped(spec.shipped_weights, key, folder, force)
    info = train_or_reuse(
        spec.architecture,
        spec.train,
        seed,
        records=train_records,
        folder=folder,
        plot=plot,
        title=title,
        force=force and not shipped,
    )
    if info.get("losses") and not plot.is_file():  # shipped or reused weights: their recorded curve
        line_plot(info["losses"], plot, f"{title} (open_clip ClipLoss)", "step", "loss")
    return {**info, "source": "shipped" if shipped else ("reused" if info["reused"] else "trained")}


def build_demo_clip(cfg, world: World, folder: Path, reports: Path, force: bool = False) -> dict:
    """The base CLIP (pre-trained here for the demo, or shipped weights of that recipe, or a pretrained open_clip
    model by name and tag), its text->image zero-shot accuracy on the database images of the world, and (demo)
    the same on the selection concepts its recipe was chosen on."""
    records = list(iter_records(cfg.source))
    selection = None
    if isinstance(cfg.clip, PretrainedClipConfig):
        info = materialize_pretrained(cfg.clip, folder, force)
    else:
        pretrain = base_clip_records(cfg, world, records)
        if not pretrain:
            raise ValueError(f"no images in the clip_pretrain styles {sorted(cfg.world.styles.clip_pretrain)}")
        info = _train_demo_model(
            cfg.clip, cfg.world.seed, pretrain, folder, reports / "clip_backbone_loss.png", "clip_backbone", force
        )
        info["database_world_images_trained"] = sum(
            r.style in set(cfg.world.styles.database) and r.concept in world.concept_split for r in pretrain
        )
    bundle = load_clip(folder, cfg.device, cfg.precision)
    if world.selection and not isinstance(cfg.clip, PretrainedClipConfig):
        selection = selection_scores(bundle, cfg, world, records, "clip")
    database = [r for r in records if r.style in set(cfg.world.styles.database) and r.concept in world.concept_split]
    images, kept = load_images(database)
    zero_shot = zero_shot_report(bundle, images, [r.concept for r in kept], world.concept_split, cfg.clip.eval_caption)
    return {
        **{k: v for k, v in info.items() if k != "losses"},
        "zero_shot": zero_shot,
        "eval_images": len(kept),
        "selection": selection,
        "loss_plot": "clip_backbone_loss.png",
    }


def build_judge(cfg, world: World, folder: Path, reports: Path, force: bool = False) -> dict:
    """The evaluation judge and its ceiling: top-1 concept among the world's concepts of the reference style's
    images of world concepts, which it never trained on (``reference/known``, ``reference/novel``: what generated
    images are compared with), and, for information, of each style's images per split."""
    records = list(iter_records(cfg.source))
    selection = None
    ref = cfg.world.styles.reference
    if isinstance(cfg.judge, PretrainedClipConfig):
        info = materialize_pretrained(cfg.judge, folder, force)
    else:
        train = judge_records(cfg, world, records)
        info = _train_demo_model(cfg.judge, cfg.judge.seed, train, folder, reports / "judge_loss.png", "judge", force)
        info["reference_world_images_trained"] = sum(r.style == ref and r.concept in world.concept_split for r in train)
    bundle = load_clip(folder, cfg.device, cfg.precision)
    if world.selection and ref and not isinstance(cfg.judge, PretrainedClipConfig):
        selection = selection_scores(bundle, cfg, world, records, "judge")
    in_world = [r for r in records if r.concept in world.concept_split]
    images, kept = load_images(in_world)
    predicted = classify(bundle, images, world.concepts, cfg.clip.eval_caption)

    def score(sel):
        return accuracy([predicted[i] for i in sel], [kept[i].concept for i in sel])

    ceiling = {}
    groups = {style: {style} for style in sorted({r.style for r in kept})}
    groups["database"] = set(cfg.world.styles.database)
    if ref:
        groups["reference"] = {ref}
    for name, styles in groups.items():
        for split in ("known", "novel"):
            ceiling[f"{name}/{split}"] = score(
                [i for i, r in enumerate(kept) if r.style in styles and world.concept_split[r.concept] == split]
            )
    held_out = "reference" if ref else "database"
    record = {"model_id": bundle.model_id, "ceiling_split": held_out, "ceiling": ceiling}
    tmp = folder / f".{CEILING_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, folder / CEILING_FILE)  # beside the weights it measures: what later stages read
    return {
        **{k: v for k, v in info.items() if k != "losses"},
        "ceiling": ceiling,
        "selection": selection,
        "ceiling_split": held_out,
        "loss_plot": "judge_loss.png",
    }


def read_judge_ceiling(folder: Path) -> tuple[str, dict]:
    """The judge's ceiling as its checkpoint records it (the split whose images it never trained on, and the
    accuracy per ``<group>/<split>``); ``("database", {})`` for a judge folder written before it was recorded."""
    path = folder / CEILING_FILE
    if not path.is_file():
        return "database", {}
    record = json.loads(path.read_text())
    return record["ceiling_split"], record["ceiling"]
