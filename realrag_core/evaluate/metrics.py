"""Stage 6 kernel: distribution and per-image metrics of each arm, with sample counts and intervals.

- torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with the judge passed as the
  ``feature=`` extractor (Inception weights cannot be downloaded here): reported as ``fid_judge`` and
  ``kid_judge``, never as "FID". Reference set: the held-out artist style of the evaluation concepts.
- Standard ``fid`` / ``kid`` when configured (``metrics.inception``): torchmetrics' Inception v3 (torch-fidelity
  weights from their normal cache or a given file), images PIL-bicubic resized to 299 px from PNG, float64
  statistics, the sample count in every row.
- Per image: the judge's top-1 concept (concept accuracy); CLIP-T (cosine of prompt and image) and CLIP-I
  (mean cosine of the image with the reference set's real images of its concept) with the ``metrics.clip_score``
  model or the judge; whether the arm retrieved an image of the right concept; ``copy`` rows score the
  retrieved image itself as if it were the output.
- 95% intervals from a bootstrap over concepts and retriever seeds (``stats.crossed_bootstrap``); paired differences between arms on the same prompts and seeds.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from realrag_core.clip.bundle import ClipBundle

MIN_FID_SAMPLES = 2048
INCEPTION_SIZE = 299


class JudgeFeatures(torch.nn.Module):
    """uint8 [N, 3, H, W] -> the judge's L2-normalised image embeddings, as torchmetrics expects."""

    def __init__(self, judge: ClipBundle):
        super().__init__()
        self.judge = judge
        self.size = int(
            judge.model.visual.image_size[0]
            if isinstance(judge.model.visual.image_size, tuple)
            else judge.model.visual.image_size
        )
        self.num_features = judge.dim
        cfg = getattr(judge.model.visual, "preprocess_cfg", None) or {"mean": (0.5,) * 3, "std": (0.5,) * 3}
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1) - self.mean.to(x.device)) / self.std.to(x.device)  # the judge's own normalisation
        return self.judge.embed_pixels(x)  # the judge's model, device and precision


def to_uint8(images: Sequence[Image.Image], size: int = 64) -> torch.Tensor:
    """PIL bicubic resize to a common size, then uint8 NCHW (the clean-fid recipe)."""
    arrs = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def load_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a file a user supplies, never unpickling code or objects: ``.safetensors``, or a torch
    file read with ``weights_only=True`` (a pickle holding anything but tensors and containers is refused)."""
    import pickle

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{what}: {path} holds more than tensors (pickled code or objects); refusing to load it. "
            "Give a plain state dict (.pth) or a .safetensors file"
        ) from err


def inception_state_dict(spec) -> dict[str, torch.Tensor]:
    """torch-fidelity's Inception weights: ``metrics.inception.weights``, else torch hub's cache under
    ``metrics.inception.cache_dir`` (or torch's default), fetched from torch-fidelity's URL when absent. Loaded
    here without unpickling: torch-fidelity itself would ``torch.load(..., weights_only=False)`` them."""
    if spec.weights:
        path = Path(spec.weights)
        if not path.is_file():
            raise FileNotFoundError(f"metrics.inception.weights: no file at {path}")
        return load_tensors(path, "metrics.inception.weights")
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    hub = Path(spec.cache_dir) if spec.cache_dir else Path(torch.hub.get_dir())
    return torch.hub.load_state_dict_from_url(
        URL_INCEPTION_V3, model_dir=str(hub / "checkpoints"), progress=False, weights_only=True
    )


def seeded_kid(kid, seed: int = 0):
    """KID's mean and std over its random subsets, drawn from a generator seeded here (torchmetrics draws them
    with the global one: the same images gave another KID when ``fid`` ran after other steps in its process than
    when it ran alone). The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return kid.compute()


def inception_metrics(spec, real: Sequence[Image.Image], fake: Sequence[Image.Image]) -> dict | None:
    """Standard FID and KID of ``fake`` against ``real`` (``spec``: an ``InceptionConfig``); None below 3 images.

    One Inception network serves both metrics. Images reach it as uint8 at 299 px, resized here with PIL's
    bicubic filter, so torchmetrics' own resize is the identity."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 3:
        return None
    state = inception_state_dict(spec)
    with tempfile.TemporaryDirectory() as tmp:  # torch-fidelity reads a file: one we wrote from plain tensors
        weights = Path(tmp) / "inception.pth"
        torch.save(state, weights)
        fid = FrechetInceptionDistance(feature=spec.feature, feature_extractor_weights_path=str(weights))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer")
        kid = KernelInceptionDistance(
            feature=fid.inception, subsets=50, subset_size=min(len(real), len(fake), 1001) - 1
        )
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), spec.batch_size):
            batch = to_uint8(images[start : start + spec.batch_size], INCEPTION_SIZE)
            for metric in (fid, kid):
                metric.update(batch, real=is_real)
    kid_mean, kid_std = seeded_kid(kid)
    return {
        "fid": float(fid.compute()),
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
        "n_real": len(real),
        "n_fake": len(fake),
    }


def distribution_metrics(judge: ClipBundle, real: Sequence[Image.Image], fake: Sequence[Image.Image]) -> dict | None:
    """fid_judge and kid_judge of ``fake`` against ``real``; None when either set has fewer than 3 images."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

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
    kid_mean, kid_std = seeded_kid(kid)
    return {
        "fid_judge": float(fid.compute()),
        "kid_judge": float(kid_mean),
        "kid_judge_std": float(kid_std),
        "n_real": len(real),
        "n_fake": len(fake),
    }


@torch.no_grad()
def concept_accuracy(
    judge: ClipBundle, images: Sequence[Image.Image], concepts: Sequence[str], all_concepts: Sequence[str], caption: str
) -> np.ndarray:
    """1.0 where the judge's top-1 among ``all_concepts`` (as ``caption``) is the image's concept."""
    img = judge.embed_images(list(images))
    names = judge.embed_texts([caption.format(concept=c) for c in all_concepts])
    predicted = (img @ names.T).argmax(dim=1).numpy()
    index = {c: i for i, c in enumerate(all_concepts)}
    return (predicted == np.array([index[c] for c in concepts])).astype(float)


@torch.no_grad()
def clip_scores(
    scorer: ClipBundle,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    concepts: Sequence[str],
    reference: Sequence[tuple[str, Image.Image]],
) -> dict[str, np.ndarray]:
    """CLIP-T: cosine of image and prompt. CLIP-I: mean cosine of the image with every real reference image of
    its concept (NaN where the reference set has none)."""
    img = scorer.embed_images(list(images))
    clip_t = (img * scorer.embed_texts(list(prompts))).sum(dim=1).numpy()
    clip_i = np.full(len(images), np.nan)
    if reference:
        ref = scorer.embed_images([im for _, im in reference])
        by_concept = defaultdict(list)
        for i, (c, _) in enumerate(reference):
            by_concept[c].append(i)
        means = {c: ref[rows].mean(dim=0) for c, rows in by_concept.items()}  # mean of unit vectors: mean cosine
        for i, c in enumerate(concepts):
            if c in means:
                clip_i[i] = float(img[i] @ means[c])
    return {"clip_t": clip_t, "clip_i": clip_i}


def near_duplicates(
    query: np.ndarray, nearest: Callable[[np.ndarray], tuple[str, float]], threshold: float
) -> list[dict]:
    """Rows of ``query`` (embeddings) whose nearest database image (``nearest(vector) -> (id, cosine)``) is at
    least ``threshold`` similar: ``{"index", "database_id", "cosine"}`` each."""
    found = []
    for i, vec in enumerate(np.asarray(query, dtype=np.float32)):
        db_id, cos = nearest(vec)
        if cos >= threshold:
            found.append({"index": i, "database_id": db_id, "cosine": float(cos)})
    return found


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
