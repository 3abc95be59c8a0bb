"""The GPU-side stages of the smoke pipeline on CUDA in bf16, without Dagster and LanceDB (their wheels are too
large to carry to a lent GPU machine, which has no package registry):

- every generator route (SD, SDXL, SD3, FLUX IP-Adapter; OmniGen) on tiny random-weight models written by
  ``realrag_core.testing.tiny_models``: determinism for fixed seeds, the reference changes the output, no reference
  at scale 0 equals the base pipeline, images/s;
- the reflective retriever's loss and optimiser steps on a small open_clip model on the GPU (finite loss, the loss
  falls on a fixed batch);
- FID/KID with torchmetrics' Inception on the GPU (random weights: plumbing, not a score).

Prints one line per check and a JSON summary; exits 1 when a check fails. ``--device cpu`` runs it here.

    python bench/gpu_smoke.py --device cuda --dtype bfloat16 --out gpu_smoke.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

RED, BLUE = Image.new("RGB", (48, 48), (230, 20, 20)), Image.new("RGB", (48, 48), (20, 20, 230))


def _px(images):
    return np.stack([np.asarray(im, dtype=np.float32) for im in images])


def check_generators(root: Path, device: str, dtype: str) -> list[dict]:
    from realrag_core.generators.kinds.diffusers_ip_adapter import DiffusersGeneratorConfig
    from realrag_core.generators.kinds.diffusers_omnigen import OmniGenGeneratorConfig
    from realrag_core.testing import tiny_models as tiny
    from realrag_core.generators.diffusers_ip import DiffusersIPAdapterGenerator, load_pipeline
    from realrag_core.generators.diffusers_omnigen import OmniGenGenerator, load_omnigen_pipeline

    layouts = {
        "sd": (tiny.write_tiny_sd_ip_adapter, "models", "ip-adapter_sd15.safetensors", "image_encoder"),
        "sdxl": (tiny.write_tiny_sdxl_ip_adapter, "sdxl_models", "ip-adapter_sdxl.safetensors", "image_encoder"),
        "sd3": (tiny.write_tiny_sd3_ip_adapter, "", "ip-adapter.safetensors", None),
        "flux": (tiny.write_tiny_flux_ip_adapter, "", "ip_adapter.safetensors", None),
    }
    sampling = {"steps": 4, "image_size": 32, "batch_size": 4}
    rows = []
    for family in [*layouts, "omnigen"]:
        start = time.perf_counter()
        if family == "omnigen":
            spec = OmniGenGeneratorConfig(
                kind="diffusers_omnigen",
                model=str(tiny.write_tiny_omnigen(root / family)),
                dtype=dtype,
                sampling={**sampling, "guidance": 2.5},
            )
            gen = OmniGenGenerator(load_omnigen_pipeline(spec, device), spec, "gpu-smoke")
        else:
            write, subfolder, weight, encoder = layouts[family]
            pipeline_dir, ip_repo = write(root / family)
            spec = DiffusersGeneratorConfig(
                kind="diffusers_ip_adapter",
                family=family,
                model=str(pipeline_dir),
                dtype=dtype,
                ip_adapter={
                    "repo": str(ip_repo),
                    "scale": 1.0,
                    "subfolder": subfolder,
                    "weight_name": weight,
                    "image_encoder_folder": encoder or str(ip_repo / "image_encoder"),
                },
                sampling={**sampling, "guidance": 2.0},
            )
            gen = DiffusersIPAdapterGenerator(load_pipeline(spec, device), spec, "gpu-smoke")
        load_s = time.perf_counter() - start
        prompts, seeds = ["a red circle"] * 4, [0, 1, 0, 1]
        t0 = time.perf_counter()
        first = gen.generate(prompts, [RED, RED, BLUE, None], seeds)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        again = gen.generate(prompts, [RED, RED, BLUE, None], seeds)
        a, b = _px(first), _px(again)
        row = {
            "check": f"generator/{family}",
            "load_s": round(load_s, 1),
            "images_per_s": round(4 / seconds, 2),
            "deterministic": bool(np.abs(a - b).max() <= 1.0),  # bf16 kernels may differ by a rounding step
            "reference_changes_output": bool(np.abs(a[0] - a[2]).mean() > 0.01),
            "size": list(first[0].size),
        }
        row["ok"] = row["deterministic"] and row["reference_changes_output"] and row["size"] == [32, 32]
        rows.append(row)
        print(json.dumps(row), flush=True)
        del gen
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def check_retriever_steps(device: str) -> dict:
    import open_clip

    from realrag_core.clip.loss import reflective_contrastive_loss

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).to(device)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("visual")], lr=1e-4)
    batch = 16
    pixels = torch.randn(batch, 3, 224, 224, device=device)
    tokens = tokenizer([f"a photo of object {i}" for i in range(batch)]).to(device)
    negatives = torch.nn.functional.normalize(
        torch.randn(batch, 1, model.text_projection.shape[1], device=device), dim=-1
    )
    losses = []
    start = time.perf_counter()
    for _ in range(10):
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            with torch.no_grad():
                img = torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)
            txt = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
            loss = reflective_contrastive_loss(txt, img, model.logit_scale.exp(), negatives=negatives)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if device == "cuda":
        torch.cuda.synchronize()
    row = {
        "check": "retriever/reflective_loss_steps",
        "steps_per_s": round(10 / (time.perf_counter() - start), 2),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }
    row["ok"] = all(np.isfinite(losses)) and losses[-1] < losses[0]
    print(json.dumps(row), flush=True)
    return row


def check_fid(device: str, root: Path) -> dict:
    from torchmetrics.image.fid import FrechetInceptionDistance

    from realrag_core.evaluate.metrics import INCEPTION_SIZE, to_uint8
    from realrag_core.testing.inception import write_random_inception

    write_random_inception(root / "inception.pth")  # random weights: nothing to download there
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(root / "inception.pth")).to(device)
    reds = [Image.new("RGB", (64, 64), (200 + i, 20, 20)) for i in range(8)]
    blues = [Image.new("RGB", (64, 64), (20, 20, 200 + i)) for i in range(8)]
    start = time.perf_counter()
    fid.update(to_uint8(reds, INCEPTION_SIZE).to(device), real=True)
    fid.update(to_uint8(blues, INCEPTION_SIZE).to(device), real=False)
    value = float(fid.compute())
    row = {
        "check": "metrics/inception_fid",
        "value_random_weights": value,
        "seconds": round(time.perf_counter() - start, 2),
        "ok": bool(np.isfinite(value)),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dtype = args.dtype if args.device == "cuda" else "float32"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = check_generators(Path(tmp), args.device, dtype)
        rows.append(check_retriever_steps(args.device))
        rows.append(check_fid(args.device, Path(tmp)))
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    summary = {
        "device": device,
        "dtype": dtype,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - start),
        "ok": all(r["ok"] for r in rows),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
