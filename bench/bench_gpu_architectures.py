"""Benchmark: real-size architectures with random weights (weights do not change speed), side by side.

- open_clip ViT-L-14 image embedding: images/s at batch 64.
- SD 1.5- and SDXL-size ``UNet2DConditionModel`` denoising steps/s at batch 1 and 8 (classifier-free guidance
  doubles the batch a pipeline sends: batch 8 here is 4 prompts with CFG), SDPA attention, eager and
  ``torch.compile``; the compiled rows also print their compile time and the speed-up over eager.

Prints one table and writes it as JSON. Designed for one GPU within the device budget (a time budget skips
the remaining compiled rows, and says so); ``--tiny`` runs the same code on scaled-down configs on a CPU.

    python bench/bench_gpu_architectures.py --device cuda --dtype bfloat16 --out bench_gpu.json
    python bench/bench_gpu_architectures.py --tiny            # CPU check of the script itself
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SD15 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SDXL = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
TINY = {
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "sample_size": 16,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "layers_per_block": 1,
    "transformer_layers_per_block": 1,
    "norm_num_groups": 8,
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, warmup: int, iters: int) -> float:
    """Seconds per call after ``warmup`` calls (compile happens there)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def unet_inputs(cfg: dict, batch: int, device: str, dtype) -> dict:
    size, text_len = cfg["sample_size"], 77
    kwargs = {
        "sample": torch.randn(batch, 4, size, size, device=device, dtype=dtype),
        "timestep": torch.full((batch,), 500, device=device),
        "encoder_hidden_states": torch.randn(batch, text_len, cfg["cross_attention_dim"], device=device, dtype=dtype),
    }
    if cfg.get("addition_embed_type") == "text_time":
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, device=device, dtype=dtype),
            "time_ids": torch.zeros(batch, 6, device=device, dtype=dtype),
        }
    return kwargs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tiny", action="store_true", help="scaled-down configs (a CPU check of this script)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip compiled rows after this many seconds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel
    import open_clip

    device, dtype = args.device, getattr(torch, args.dtype if args.device != "cpu" or args.tiny else "float32")
    if args.tiny:
        dtype = torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True
    start, rows = time.perf_counter(), []
    info = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}",
        "dtype": str(dtype),
        "torch": torch.__version__,
        "tiny": args.tiny,
    }
    print(json.dumps(info), flush=True)

    clip_name = "ViT-B-32" if args.tiny else "ViT-L-14"
    with torch.device(device):
        clip = open_clip.create_model(clip_name, pretrained=None).to(dtype).eval()
    size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    batch = 8 if args.tiny else 64
    pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    with torch.no_grad():
        sec = timed(lambda: clip.encode_image(pixels), device, 2, 3 if args.tiny else 20)
    rows.append(
        {
            "model": f"open_clip {clip_name} image tower",
            "batch": batch,
            "mode": "eager",
            "per_s": batch / sec,
            "unit": "images/s",
        }
    )
    print(rows[-1], flush=True)
    clip = None  # free its memory before the UNets

    for name, cfg in (("SD1.5-size UNet", SD15), ("SDXL-size UNet", SDXL)):
        if args.tiny:
            cfg = (
                {**cfg, **TINY}
                if "addition_embed_type" not in cfg
                else {
                    **cfg,
                    **TINY,
                    "attention_head_dim": 8,
                    "projection_class_embeddings_input_dim": 32 + 6 * 8,
                    "addition_time_embed_dim": 8,
                    "transformer_layers_per_block": 1,
                }
            )
        with torch.device(device):
            unet = UNet2DConditionModel(**cfg).to(dtype).eval()
        params = sum(p.numel() for p in unet.parameters())
        for batch in (1, 8):
            inputs = unet_inputs(cfg, batch, device, dtype)
            with torch.no_grad():
                sec = timed(lambda: unet(**inputs), device, 2, 3 if args.tiny else 10)
            eager = {
                "model": name,
                "params_m": round(params / 1e6),
                "batch": batch,
                "mode": "eager (SDPA)",
                "per_s": 1 / sec,
                "unit": "steps/s",
            }
            rows.append(eager)
            print(rows[-1], flush=True)
            if args.no_compile:
                continue
            if time.perf_counter() - start > args.budget_s:
                rows.append({**eager, "mode": "compiled", "per_s": None, "note": "skipped: time budget"})
                print(rows[-1], flush=True)
                continue
            compiled = torch.compile(unet)
            with torch.no_grad():
                t0 = time.perf_counter()
                compiled(**inputs)
                sync(device)
                compile_s = time.perf_counter() - t0
                sec = timed(lambda: compiled(**inputs), device, 1, 3 if args.tiny else 10)
            rows.append(
                {
                    **eager,
                    "mode": "torch.compile",
                    "per_s": 1 / sec,
                    "compile_s": round(compile_s, 1),
                    "speedup": round(eager["per_s"] and (1 / sec) / eager["per_s"], 2),
                }
            )
            print(rows[-1], flush=True)
            torch._dynamo.reset()
        unet = None
        if device == "cuda":
            torch.cuda.empty_cache()

    print(f"\n{info['device']}, {info['dtype']}, torch {info['torch']}{' (tiny configs)' if args.tiny else ''}")
    print("| model | batch | mode | throughput | note |\n|---|---|---|---|---|")
    for r in rows:
        value = "-" if r["per_s"] is None else f"{r['per_s']:.1f} {r['unit']}"
        note = r.get("note") or (f"compile {r['compile_s']} s, x{r['speedup']} vs eager" if "compile_s" in r else "")
        print(f"| {r['model']} | {r['batch']} | {r['mode']} | {value} | {note} |")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"info": info, "rows": rows, "seconds": time.perf_counter() - start}, fh, indent=2)


if __name__ == "__main__":
    main()
