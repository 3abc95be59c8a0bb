"""Benchmark: the image_embeddings kernel against its model alone, and its memory against the source size.

Efficiency: images/s of ``embed_source`` (files on disk -> decode -> preprocess -> model -> LanceDB) divided by
the rate of the same model and batch size on pre-decoded tensors, with a ViT-B-32 (random weights, 224 px: the
model dominates as in real use; target >= 0.9) and with the demo's CLIP (64 px, tiny: decoding dominates).
Memory: peak resident memory of the embedding run over 10k and over 100k small images, each in a fresh process
(target <= 1.2: streaming, nothing accumulates per image). Writes bench/results/embedding.json.

    .venv/bin/python bench/bench_embedding.py [--images 512] [--workers 0] [--rss-small 10000 --rss-large 100000]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from _results import peak_rss_mb, reset_peak_rss, write
from realrag_core.clip.bundle import ClipBundle, create_untrained
from realrag_core.config.clip import DemoClipConfig
from realrag_core.data.sources.caption_file import CaptionFileSourceConfig
from realrag_core.config.stages import EmbeddingsConfig
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope


def make_source(folder: Path, n: int, size: int, fmt: str = "JPEG") -> CaptionFileSourceConfig:
    """n distinct photos-like images (smooth gradients plus noise), size x size, with a captions file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = np.stack([np.sin(xx * (i % 7 + 1)), np.cos(yy * (i % 5 + 1)), xx * yy], axis=-1)
        pixels = np.clip((base * 0.5 + 0.5) * 255 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        name = f"img{i:06d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(pixels).save(folder / name, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        rows.append({"path": name, "caption": f"object {i % 100}", "concept": f"object {i % 100}", "style": "photo"})
    with (folder / "captions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return CaptionFileSourceConfig(image_dir=folder, captions=folder / "captions.csv")


def scope(n: int) -> Scope:
    return Scope(frozenset({"photo"}), {f"object {i}": "known" for i in range(min(n, 100))})


def vit_b_32() -> ClipBundle:
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    return ClipBundle(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "bench:ViT-B-32-random")


def demo_clip(folder: Path) -> ClipBundle:
    model, _, preprocess, tokenizer = create_untrained(folder, DemoClipConfig().architecture, seed=0)
    model.eval()
    return ClipBundle(model, preprocess, tokenizer, "bench:demo-clip-random")


def efficiency(clip: ClipBundle, source, n: int, batch: int, workers: int, work: Path, rounds: int = 2) -> dict:
    """Best of ``rounds`` alternating timings of the pipeline (a new table each time) and of the model alone on
    the same images, decoded and preprocessed beforehand; one warm-up pass of each first (the first forward
    passes build oneDNN kernels and allocator pools)."""
    cfg = EmbeddingsConfig(batch_size=batch, num_workers=workers, table_name="bench")
    pixels = torch.stack(
        [
            clip.preprocess(Image.open(source.image_dir / f).convert("RGB"))
            for f in sorted(p.name for p in source.image_dir.glob("img*"))
        ]
    )
    name = clip.model_id.split(":")[-1]

    def pipeline(db: str) -> float:
        start = time.perf_counter()
        report = embed_source(
            source, scope(n), clip, uri=db, cfg=cfg, rejects_path=work / "rejects.parquet", progress=False
        )
        assert report.inserted == n, report
        return report.inserted / (time.perf_counter() - start)

    def model_only() -> float:
        start = time.perf_counter()
        for i in range(0, n, batch):
            clip.embed_pixels(pixels[i : i + batch])
        return n / (time.perf_counter() - start)

    clip.embed_pixels(pixels[:batch])  # warm-up of the model, then of the whole pipeline on a few images
    warm = make_source(work / f"warm-{name}", batch, 64, "PNG")
    embed_source(
        warm,
        scope(batch),
        clip,
        uri=str(work / f"warm-db-{name}"),
        cfg=cfg,
        rejects_path=work / "rejects.parquet",
        progress=False,
    )
    runs = [(pipeline(str(work / f"db-{name}-{workers}-{r}")), model_only()) for r in range(rounds)]
    best_pipeline, best_model = max(p for p, _ in runs), max(m for _, m in runs)
    return {
        "pipeline_img_s": round(best_pipeline, 1),
        "model_only_img_s": round(best_model, 1),
        "ratio": best_pipeline / best_model,
        "rounds": [[round(p, 1), round(m, 1)] for p, m in runs],
    }


def rss_child(n: int, work: Path) -> None:
    source = make_source(work / f"src{n}", n, 32, "PNG")
    clip = demo_clip(work / "clip")
    reset_peak_rss()  # the peak of the embedding run, not of writing the source folder
    base = peak_rss_mb()
    report = embed_source(
        source,
        scope(n),
        clip,
        uri=str(work / f"db{n}"),
        cfg=EmbeddingsConfig(batch_size=256, num_workers=0),
        rejects_path=work / f"rejects{n}.parquet",
        progress=False,
    )
    print(
        json.dumps(
            {"images": report.inserted, "peak_rss_mb": peak_rss_mb(), "before_mb": base, "seconds": report.seconds}
        )
    )


def rss(n: int, work: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n), "--work", str(work)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--rss-small", type=int, default=10_000)
    parser.add_argument("--rss-large", type=int, default=100_000)
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child, Path(args.work))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vit = efficiency(
            vit_b_32(), make_source(work / "photos", args.images, 256), args.images, args.batch, args.workers, work
        )
        print(
            f"ViT-B-32 224 px: pipeline {vit['pipeline_img_s']} img/s, model alone {vit['model_only_img_s']} img/s",
            flush=True,
        )
        demo = efficiency(
            demo_clip(work / "democlip"),
            make_source(work / "small", args.images * 4, 64, "PNG"),
            args.images * 4,
            args.batch,
            args.workers,
            work,
        )
        print(
            f"demo CLIP 64 px: pipeline {demo['pipeline_img_s']} img/s, model alone {demo['model_only_img_s']} img/s",
            flush=True,
        )
        small, large = rss(args.rss_small, work), rss(args.rss_large, work)
        print(
            f"peak RSS: {small['peak_rss_mb']:.0f} MB at {small['images']:,} images, {large['peak_rss_mb']:.0f} MB "
            f"at {large['images']:,}"
        )
    write(
        "embedding",
        "Embedding pipeline",
        {
            "images": args.images,
            "batch": args.batch,
            "workers": args.workers,
            "rss_small": args.rss_small,
            "rss_large": args.rss_large,
        },
        {"vit_b_32": vit, "demo_clip": demo, "rss_small": small, "rss_large": large},
        {
            "ViT-B-32 pipeline / model-only img/s": (vit["ratio"], ">= 0.9"),
            "demo CLIP pipeline / model-only img/s": (demo["ratio"], None),
            f"peak RSS {args.rss_large:,} / {args.rss_small:,} images": (
                large["peak_rss_mb"] / small["peak_rss_mb"],
                "<= 1.2",
            ),
        },
    )


if __name__ == "__main__":
    main()
