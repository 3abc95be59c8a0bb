"""Train (or reuse) the demo's open_clip models and measure them.

Two models come from the same code with different data and seeds:
- the base CLIP (``clip_backbone``): pre-training styles only, so it is a genuine zero-shot retriever on the
  database images, which it never saw;
- the judge (``judge``): every real image and caption, reference style included, used only for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .clip_backbone import (
    TRAINING_FILE,
    WEIGHTS_NAME,
    ClipBundle,
    create_untrained,
    load_clip,
    model_id_of,
    save_clip,
    train_clip,
    zero_shot_report,
)
from .clip_pretrained import materialize_pretrained
from .config import ClipArchitecture, ClipTrainConfig, PretrainedClipConfig, RealRagConfig
from .image_io import DecodeLimits, decode_image
from .plots import line_plot
from .sources import ImageRecord, iter_records
from .stats import wilson_interval
from .world import World



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
    h = hashlib.sha256(json.dumps([arch.model_dump(mode="json"), train.model_dump(mode="json"), seed]).encode())
    for r in records:
        h.update(f"{r.path.name}\t{r.caption}\t{r.style}\t{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def train_or_reuse(
    arch: ClipArchitecture, train: ClipTrainConfig, seed: int, records: Sequence[ImageRecord], folder: Path,
    plot: Path, title: str, force: bool = False,
) -> dict:
    """Weights in ``folder`` for exactly these inputs are reused; otherwise train with ClipLoss and save."""
    key = training_key(arch, train, seed, records)
    meta_path = folder / TRAINING_FILE
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if (not force and previous.get("key") == key and (folder / WEIGHTS_NAME).is_file()
            and previous.get("model_id") == model_id_of(folder / WEIGHTS_NAME)):  # fmt: skip
        return {**previous, "reused": True}
    images, kept = load_images(records)
    model, train_tf, _, tokenizer = create_untrained(folder, arch, seed, train.augment_scale)
    start = time.perf_counter()
    bar = tqdm(total=train.steps, desc=title, unit="step")

    def on_step(step, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    losses = train_clip(model, tokenizer, train_tf, images, [r.concept for r in kept], train, seed, on_step)
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


def build_demo_clip(cfg: RealRagConfig, world: World, folder: Path, reports: Path, force: bool = False) -> dict:
    """The base CLIP (pre-trained here for the demo, or a pretrained open_clip model by name and tag), and its
    text->image zero-shot accuracy on the database images of the world."""
    records = list(iter_records(cfg.source))
    if isinstance(cfg.clip, PretrainedClipConfig):
        info = materialize_pretrained(cfg.clip, folder, force)
    else:
        styles = set(cfg.world.styles.clip_pretrain)
        pretrain = [r for r in records if r.style in styles]
        if not pretrain:
            raise ValueError(f"no images in the clip_pretrain styles {sorted(styles)}")
        info = train_or_reuse(cfg.clip.architecture, cfg.clip.train, cfg.world.seed, pretrain, folder,
                              reports / "clip_backbone_loss.png", "clip_backbone", force)  # fmt: skip
    bundle = load_clip(folder, cfg.device, cfg.precision)
    database = [r for r in records if r.style in set(cfg.world.styles.database) and r.concept in world.concept_split]
    images, kept = load_images(database)
    zero_shot = zero_shot_report(bundle, images, [r.concept for r in kept], world.concept_split, cfg.clip.eval_caption)
    return {**{k: v for k, v in info.items() if k != "losses"}, "zero_shot": zero_shot, "eval_images": len(kept),
            "loss_plot": str(reports / "clip_backbone_loss.png")}  # fmt: skip


def build_judge(cfg: RealRagConfig, world: World, folder: Path, reports: Path, force: bool = False) -> dict:
    """The evaluation judge, and its top-1 concept accuracy on real images of the world per style and split
    (the ceiling generated images are compared with)."""
    records = list(iter_records(cfg.source))
    if isinstance(cfg.judge, PretrainedClipConfig):
        info = materialize_pretrained(cfg.judge, folder, force)
    else:
        info = train_or_reuse(cfg.judge.architecture, cfg.judge.train, cfg.judge.seed, records, folder,
                              reports / "judge_loss.png", "judge", force)  # fmt: skip
    bundle = load_clip(folder, cfg.device, cfg.precision)
    in_world = [r for r in records if r.concept in world.concept_split]
    images, kept = load_images(in_world)
    predicted = classify(bundle, images, world.concepts, cfg.clip.eval_caption)
    ceiling = {}
    for style in sorted({r.style for r in kept}):
        for split in ("known", "novel"):
            sel = [i for i, r in enumerate(kept) if r.style == style and world.concept_split[r.concept] == split]
            ceiling[f"{style}/{split}"] = accuracy([predicted[i] for i in sel], [kept[i].concept for i in sel])
    database = set(cfg.world.styles.database)
    for split in ("known", "novel"):
        sel = [i for i, r in enumerate(kept) if r.style in database and world.concept_split[r.concept] == split]
        ceiling[f"database/{split}"] = accuracy([predicted[i] for i in sel], [kept[i].concept for i in sel])
    return {**{k: v for k, v in info.items() if k != "losses"}, "ceiling": ceiling,
            "loss_plot": str(reports / "judge_loss.png")}  # fmt: skip
