"""The demo's base CLIP: a small open_clip model built by open_clip's own factory from a model config,
trained contrastively with ``open_clip.loss.ClipLoss``, saved the way open_clip loads local models
(``open_clip_config.json`` + ``open_clip_model.safetensors``, opened with ``local-dir:<folder>``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import json
import math
import random
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors.torch import save_file

from realrag_core.config.clip import ClipArchitecture, ClipTrainConfig
from realrag_core.evaluate.stats import wilson_interval

# open_clip (with torchvision, timm and transformers) takes seconds to import: only where a model is made
if TYPE_CHECKING:
    import open_clip
    from open_clip.loss import ClipLoss

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
TRAINING_FILE = "training.json"  # what made the weights: its "key" is what later stages check
NAME_FILE = "model_name.txt"  # present for pretrained models: their open_clip name and tag
# Emoji sit on white; mean/std 0.5 keeps white at +1 and the artwork's colours spread around 0.
PREPROCESS_CFG = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


@dataclass
class ClipBundle:
    model: open_clip.CLIP
    preprocess: Callable  # PIL -> tensor, evaluation transform
    tokenizer: Callable
    model_id: str
    device: str = "cpu"
    precision: str = "float32"  # embeddings under torch.autocast in this dtype (bfloat16/float16 on GPUs)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    def _autocast(self):
        return torch.autocast(
            device_type=torch.device(self.device).type,
            dtype=getattr(torch, self.precision),
            enabled=self.precision != "float32",
        )

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            with self._autocast():
                out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)

    @torch.no_grad()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return F.normalize(self.model.encode_image(pixels.to(self.device)).float(), dim=-1).cpu()

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 256) -> torch.Tensor:
        out = [
            self.embed_pixels(torch.stack([self.preprocess(im) for im in images[i : i + batch_size]]))
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.dim)


def write_model_config(folder: Path, arch: ClipArchitecture) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    path.write_text(json.dumps({"model_cfg": arch.open_clip_model_cfg(), "preprocess_cfg": PREPROCESS_CFG}, indent=2))
    return path


def create_untrained(folder: Path, arch: ClipArchitecture, seed: int, aug_cfg: dict | None = None):
    """A randomly initialised model through open_clip's factory, from the config written to ``folder``;
    ``aug_cfg`` is open_clip's augmentation config for the training transform (``ClipTrainConfig.open_clip_aug_cfg``).

    The factory is pointed at a scratch folder holding only the config: ``local-dir:`` would otherwise load
    weights an earlier run left in ``folder`` and silently continue from them."""
    import open_clip

    write_model_config(folder, arch)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch, _quiet_open_clip(), warnings.catch_warnings():
        # open_clip's image_transform uses color_jitter and color_jitter_prob yet still lists them as unused
        warnings.filterwarnings(
            "ignore",
            message=r"Unused augmentation cfg items.*\['color_jitter', 'color_jitter_prob'\]",
            category=UserWarning,
        )
        write_model_config(Path(scratch), arch)
        model, train_tf, eval_tf = open_clip.create_model_and_transforms(
            f"local-dir:{scratch}", aug_cfg=aug_cfg or ClipTrainConfig().open_clip_aug_cfg()
        )
        tokenizer = open_clip.get_tokenizer(f"local-dir:{scratch}")
    return model, train_tf, eval_tf, tokenizer


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip warns "no pretrained weights loaded" through the root logger; a new model has none on purpose."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters' device has one (CPU and CUDA): the same update rule.
    Measured on the demo's 2-core CPU (one thread): a step over a text tower's 49,408 x 128 token embedding took
    43 ms unfused, 11 ms fused; a retriever fine-tuning step went from 134 to 91 ms."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_clip(
    model: open_clip.CLIP,
    tokenizer: Callable,
    train_transform: Callable,
    *,
    images: Sequence[Image.Image],
    concepts: Sequence[str],
    cfg: ClipTrainConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Contrastive training on (caption, image) pairs. Each batch holds each of its concepts once (with
    ``image_pair_weight``, two images of it and its caption once), so no in-batch negative is secretly a positive."""
    from open_clip.loss import ClipLoss

    rng = random.Random(seed)
    flip_rng = random.Random(f"flip-{seed}")
    torch.manual_seed(seed)
    if cfg.color_jitter_prob:  # open_clip's color_jitter draws whether to apply from the global ``random``
        random.seed(f"jitter-{seed}")
    by_concept: dict[str, list[int]] = {}
    for i, c in enumerate(concepts):
        by_concept.setdefault(c, []).append(i)
    names = sorted(by_concept)
    pairs = cfg.image_pair_weight > 0
    batch = min(cfg.batch_size // 2 if pairs else cfg.batch_size, len(names))  # concepts per batch
    if batch < 2:
        raise ValueError("contrastive training needs at least two concepts")
    # plain (unfused) AdamW by default: the shipped demo generator's text encoder was trained so, and another
    # kernel's rounding would drift a re-made encoder away from the features the generator learned on
    optimizer = (
        adamw(model.parameters(), cfg.lr, cfg.weight_decay)
        if cfg.fused_optimizer
        else torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, cfg.steps, cfg.warmup_steps)
    )
    loss_fn = ClipLoss()
    # the average holds its own copy of the weights and draws no random numbers: the trained path is unchanged
    first_averaged = None if cfg.average_from is None else int(cfg.steps * cfg.average_from)
    averaged = None if first_averaged is None else torch.optim.swa_utils.AveragedModel(model)
    model.train()
    losses = []
    for step in range(cfg.steps):
        chosen = rng.sample(names, batch)
        if pairs:  # two drawings of each concept, side by side: [c0 a, c0 b, c1 a, c1 b, ...]
            idx = [i for c in chosen for i in _two_of(by_concept[c], rng)]
        else:
            idx = [rng.choice(by_concept[c]) for c in chosen]
        # the flip draws come from their own generator, so hflip 0 leaves the old recipes' random streams as they were
        flips = [flip_rng.random() < cfg.hflip for _ in idx] if cfg.hflip else [False] * len(idx)
        pixels = torch.stack(
            [train_transform(ImageOps.mirror(images[i]) if f else images[i]) for i, f in zip(idx, flips)]
        )
        captions = [rng.choice(cfg.captions).format(concept=c) for c in chosen]
        image_features, text_features, logit_scale = model(pixels, tokenizer(captions))
        if pairs:
            first, second = image_features[0::2], image_features[1::2]
            loss = (
                _caption_loss(loss_fn, first, text_features, logit_scale, cfg.image_text_weight)
                + _caption_loss(loss_fn, second, text_features, logit_scale, cfg.image_text_weight)
            ) / 2 + cfg.image_pair_weight * loss_fn(first, second, logit_scale)
        else:
            loss = _caption_loss(loss_fn, image_features, text_features, logit_scale, cfg.image_text_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # CLIP's clamp on the learned temperature
            model.logit_scale.clamp_(0, math.log(100))
        if averaged is not None and step >= first_averaged:
            averaged.update_parameters(model)
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            # a ResNet's batch-norm statistics belong to no single step: recompute them for the averaged weights
            # (SWA's update_bn) over one pass of the training images, augmented as in training; a ViT has none
            order = random.Random(f"bn-{seed}").sample(range(len(images)), len(images))
            batches = (
                torch.stack([train_transform(images[i]) for i in order[start : start + cfg.batch_size]])
                for start in range(0, len(order), cfg.batch_size)
            )
            with torch.no_grad():
                torch.optim.swa_utils.update_bn(batches, model)
    model.eval()
    return losses


def _two_of(own: Sequence[int], rng: random.Random) -> tuple[int, int]:
    """Two different images of one concept (two artists' drawings: the records hold one per concept and style),
    or its only image twice (two augmentations of it, as SimCLR pairs them)."""
    return tuple(rng.sample(own, 2)) if len(own) > 1 else (own[0], own[0])


def _caption_loss(loss_fn: ClipLoss, image_features, text_features, logit_scale, image_text_weight: float):
    """open_clip's symmetric ClipLoss, or with the image->text term weighted down (text->image is what
    retrieval asks)."""
    if image_text_weight == 1.0:
        return loss_fn(image_features, text_features, logit_scale)
    logits = logit_scale * text_features @ image_features.T
    labels = torch.arange(len(image_features))
    return (F.cross_entropy(logits, labels) + image_text_weight * F.cross_entropy(logits.T, labels)) / (
        1 + image_text_weight
    )


def model_id_of(weights: Path) -> str:
    """``<name>:<sha256 of the weights>``; the name is ``demo-clip`` unless the folder records one (a pretrained
    model's ``open_clip:<model>/<tag>``)."""
    name_file = weights.parent / NAME_FILE
    name = name_file.read_text().strip() if name_file.is_file() else "demo-clip"
    return f"{name}:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


def save_clip(model: open_clip.CLIP, folder: Path, name: str | None = None) -> str:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_NAME}.tmp"
    save_file(state, str(tmp))
    tmp.replace(folder / WEIGHTS_NAME)  # a kill mid-write leaves the previous weights, never half a file
    if name:
        (folder / NAME_FILE).write_text(name)
    else:
        (folder / NAME_FILE).unlink(missing_ok=True)
    return model_id_of(folder / WEIGHTS_NAME)


def load_clip(folder: Path, device: str = "cpu", precision: str = "float32") -> ClipBundle:
    """Open a saved CLIP (demo, pretrained or fine-tuned) through open_clip's ``local-dir:`` loader."""
    import open_clip

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {folder}: materialize clip_backbone first")
    model, _, eval_tf = open_clip.create_model_and_transforms(f"local-dir:{folder}", device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    return ClipBundle(model, eval_tf, tokenizer, model_id_of(folder / WEIGHTS_NAME), device, precision)


def retrieval_accuracy(
    text_emb: torch.Tensor,
    query_concepts: Sequence[str],
    image_emb: torch.Tensor,
    image_concepts: Sequence[str],
    ks=(1, 5),
) -> dict[str, float]:
    """Text->image concept accuracy: a query hits at k if one of its k nearest images shows its concept.
    Each accuracy comes with its 95% Wilson interval (``top1_lo``, ``top1_hi``). ``mrr``: the mean over
    queries of 1 / rank of the first image of the query's concept (0 when the table has none): a finer
    score than top-1 when there are few queries."""
    sims = text_emb @ image_emb.T
    top = sims.topk(min(max(ks), sims.shape[1]), dim=1).indices.numpy()
    img_c = np.asarray(image_concepts, dtype=object)
    q = np.asarray(query_concepts, dtype=object)[:, None]
    ranked = img_c[sims.argsort(dim=1, descending=True).numpy()] == q  # [Q, N]: hit at each rank
    first = np.where(ranked.any(axis=1), ranked.argmax(axis=1) + 1, np.inf)
    out = {"mrr": float(np.mean(1.0 / first)) if len(first) else 0.0}
    for k in ks:
        hits = int((img_c[top[:, :k]] == q).any(axis=1).sum())
        lo, hi = wilson_interval(hits, len(query_concepts))
        out.update({f"top{k}": hits / len(query_concepts), f"top{k}_lo": lo, f"top{k}_hi": hi})
    return out


def zero_shot_report(
    bundle: ClipBundle,
    images: Sequence[Image.Image],
    concepts: Sequence[str],
    split_of: dict[str, str],
    caption: str,
) -> dict[str, dict[str, float]]:
    """Text->image top-1/top-5 per split, querying every concept's caption against all given images."""
    image_emb = bundle.embed_images(images)
    report = {}
    for split in sorted(set(split_of.values())):
        queries = sorted({c for c in concepts if split_of.get(c) == split})
        if not queries:
            continue
        text_emb = bundle.embed_texts([caption.format(concept=c) for c in queries])
        report[split] = {**retrieval_accuracy(text_emb, queries, image_emb, concepts), "queries": len(queries)}
    return report
