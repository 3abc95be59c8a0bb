"""Stage 6 kernel: distribution and per-image metrics of each arm, with sample counts and intervals.

- torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with the judge passed as the
  ``feature=`` extractor (Inception weights cannot be downloaded here): reported as ``fid_judge`` and
  ``kid_judge``, never as "FID". Reference set: the held-out artist style of the evaluation concepts.
- Per image: the judge's top-1 concept (concept accuracy), CLIP-T with the judge's towers (cosine of prompt
  and image), whether the arm retrieved an image of the right concept; ``copy`` rows score the retrieved
  image itself as if it were the output.
- Bootstrap 95% intervals over prompts; paired differences between arms on the same prompts and seeds.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .clip_backbone import ClipBundle

MIN_FID_SAMPLES = 2048


class JudgeFeatures(torch.nn.Module):
    """uint8 [N, 3, H, W] -> the judge's L2-normalised image embeddings, as torchmetrics expects."""

    def __init__(self, judge: ClipBundle):
        super().__init__()
        self.judge = judge
        self.size = int(judge.model.visual.image_size[0] if isinstance(judge.model.visual.image_size, tuple)
                        else judge.model.visual.image_size)  # fmt: skip
        self.num_features = judge.dim
        cfg = getattr(judge.model.visual, "preprocess_cfg", None) or {"mean": (0.5,) * 3, "std": (0.5,) * 3}
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1) - self.mean.to(x.device)) / self.std.to(x.device)  # the judge's own normalisation
        return F.normalize(self.judge.model.encode_image(x.to(self.judge.device)).float(), dim=-1).cpu()


def to_uint8(images: Sequence[Image.Image], size: int = 64) -> torch.Tensor:
    """PIL bicubic resize to a common size, then uint8 NCHW (the clean-fid recipe)."""
    arrs = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def distribution_metrics(judge: ClipBundle, real: Sequence[Image.Image], fake: Sequence[Image.Image]) -> dict | None:
    """fid_judge and kid_judge of ``fake`` against ``real``; None when either set has fewer than 3 images."""
    if min(len(real), len(fake)) < 3:
        return None
    feature = JudgeFeatures(judge)
    fid = FrechetInceptionDistance(feature=feature)
    with warnings.catch_warnings():  # KID keeps its features in memory: a few hundred small vectors here
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")
        # torchmetrics needs subset_size strictly below both sample counts
        kid = KernelInceptionDistance(feature=feature, subsets=50, subset_size=min(len(real), len(fake), 51) - 1)
    r, f = to_uint8(real), to_uint8(fake)
    for metric in (fid, kid):
        metric.update(r, real=True)
        metric.update(f, real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid_judge": float(fid.compute()), "kid_judge": float(kid_mean), "kid_judge_std": float(kid_std),
            "n_real": len(real), "n_fake": len(fake)}  # fmt: skip


@torch.no_grad()
def per_image_scores(judge: ClipBundle, images: Sequence[Image.Image], prompts: Sequence[str],
                     concepts: Sequence[str], all_concepts: Sequence[str], caption: str) -> dict[str, np.ndarray]:  # fmt: skip
    img = judge.embed_images(list(images))
    names = judge.embed_texts([caption.format(concept=c) for c in all_concepts])
    predicted = (img @ names.T).argmax(dim=1).numpy()
    index = {c: i for i, c in enumerate(all_concepts)}
    correct = predicted == np.array([index[c] for c in concepts])
    clip_t = (img * judge.embed_texts(list(prompts))).sum(dim=1).numpy()
    return {"concept_acc": correct.astype(float), "clip_t": clip_t}


def bootstrap_ci(values: np.ndarray, groups: Sequence[str], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling whole prompts (groups), not single images."""
    by = defaultdict(list)
    for v, g in zip(values, groups):
        by[g].append(v)
    keys = sorted(by)
    means = np.array([np.mean(by[k]) for k in keys])
    sizes = np.array([len(by[k]) for k in keys])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(reps, len(keys)))
    boot = (means[draws] * sizes[draws]).sum(axis=1) / sizes[draws].sum(axis=1)
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
