"""Pre-train (or reuse) the demo CLIP on its pre-training styles, then measure it as a zero-shot retriever
on the database images of the world's concepts, which it never saw."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .clip_backbone import WEIGHTS_NAME, create_untrained, load_clip, model_id_of, save_clip, train_clip, zero_shot_report
from .config import RealRagConfig
from .image_io import DecodeLimits, decode_image
from .plots import line_plot
from .sources import ImageRecord, iter_records
from .world import World

TRAINING_FILE = "training.json"


def _load_images(records: list[ImageRecord]):
    images, kept = [], []
    for r in records:
        try:
            img, reason = decode_image(r.path.read_bytes(), DecodeLimits())
        except OSError:
            img = None
        if img is not None:
            images.append(img)
            kept.append(r)
    return images, kept


def training_key(cfg: RealRagConfig, records: list[ImageRecord]) -> str:
    """What the weights depend on: the CLIP config, the seed and the exact pre-training pairs."""
    import hashlib

    h = hashlib.sha256(json.dumps(cfg.clip.model_dump(mode="json"), sort_keys=True).encode())
    h.update(str(cfg.world.seed).encode())
    for r in records:
        h.update(f"{r.path.name}\t{r.caption}\t{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def build_demo_clip(cfg: RealRagConfig, world: World, folder: Path, reports: Path, force: bool = False) -> dict:
    """Train the demo CLIP unless weights for exactly this config and data exist; report zero-shot accuracy."""
    records = list(iter_records(cfg.source))
    pretrain_styles = set(cfg.world.styles.clip_pretrain)
    pretrain = [r for r in records if r.style in pretrain_styles]
    if not pretrain:
        raise ValueError(f"no images in the clip_pretrain styles {sorted(pretrain_styles)}")
    key = training_key(cfg, pretrain)
    meta_path = folder / TRAINING_FILE
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    reused = (not force and previous.get("key") == key and (folder / WEIGHTS_NAME).is_file()
              and previous.get("model_id") == model_id_of(folder / WEIGHTS_NAME))  # fmt: skip
    if reused:
        info = previous
    else:
        images, kept = _load_images(pretrain)
        model, train_tf, _, tokenizer = create_untrained(folder, cfg.clip.architecture, cfg.world.seed,
                                                         cfg.clip.train.augment_scale)  # fmt: skip
        start = time.perf_counter()
        bar = tqdm(total=cfg.clip.train.steps, desc="clip_backbone", unit="step")

        def on_step(step, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        losses = train_clip(model, tokenizer, train_tf, images, [r.concept for r in kept], cfg.clip.train,
                            cfg.world.seed, on_step)  # fmt: skip
        bar.close()
        model_id = save_clip(model, folder)
        info = {
            "key": key,
            "model_id": model_id,
            "train_seconds": round(time.perf_counter() - start, 1),
            "pretrain_images": len(kept),
            "pretrain_concepts": len({r.concept for r in kept}),
            "pretrain_styles": sorted(pretrain_styles),
            "losses": losses,
            "params": sum(p.numel() for p in model.parameters()),
        }
        meta_path.write_text(json.dumps(info))
        line_plot(losses, reports / "clip_backbone_loss.png", "demo CLIP pre-training (ClipLoss)", "step", "loss")
    bundle = load_clip(folder, cfg.device)
    database = [r for r in records if r.style in set(cfg.world.styles.database) and r.concept in world.concept_split]
    images, kept = _load_images(database)
    with torch.no_grad():
        zero_shot = zero_shot_report(bundle, images, [r.concept for r in kept], world.concept_split, cfg.clip.eval_caption)
    return {**{k: v for k, v in info.items() if k != "losses"}, "reused": reused, "final_loss": info["losses"][-1],
            "zero_shot": zero_shot, "eval_images": len(kept), "loss_plot": str(reports / "clip_backbone_loss.png")}  # fmt: skip
