"""Tiny random-weight instances of real generator families, saved in the layout real weights use.

Weights cannot be downloaded here, so tests and the smoke profile prove the real loading code
(``DiffusionPipeline.from_pretrained`` + ``load_ip_adapter``) on folders laid out like the hub repositories
(``runwayml``-style pipeline folders, ``h94/IP-Adapter``'s ``models/ip-adapter_sd15.safetensors`` with
``models/image_encoder``). Every class is the real one (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, ``CLIPVisionModelWithProjection``, ``CLIPTokenizer``); only the sizes are tiny. The
tokenizer is CLIP's own BPE, rebuilt from the merges file that open_clip ships.

Random weights check plumbing, shapes, determinism and that the reference changes the output, never quality.
"""

from __future__ import annotations

from pathlib import Path

import torch
from realrag_core.testing.tiny_parts import clip_text_config, clip_tokenizer, tiny_vae
from realrag_core.testing.tiny_transformers import (
    write_tiny_flux_ip_adapter,
    write_tiny_omnigen,
    write_tiny_sd3_ip_adapter,
)

SD_IP_SUBFOLDER = "models"
SD_IP_WEIGHT = "ip-adapter_sd15.safetensors"


def write_tiny_sd_ip_adapter(
    root: Path, seed: int = 0, sample_size: int = 16, text_dim: int = 32, image_embed_dim: int = 32
) -> tuple[Path, Path]:
    """A Stable-Diffusion-1.5-class pipeline (UNet with cross-attention, KL VAE, CLIP text model and tokenizer,
    DDIM scheduler) and an IP-Adapter for it. Returns (pipeline folder, IP-Adapter repository folder)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    root = Path(root)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = tiny_vae(sample_size)
    text_encoder = CLIPTextModel(clip_text_config(text_dim))
    tokenizer = clip_tokenizer()
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline_dir = root / "tiny-sd"
    pipe.save_pretrained(pipeline_dir)

    ip_repo = write_tiny_ip_adapter(
        root / "tiny-ip-adapter", unet, SD_IP_SUBFOLDER, SD_IP_WEIGHT, seed, image_embed_dim
    )
    return pipeline_dir, ip_repo


def write_tiny_ip_adapter(
    repo: Path, unet, subfolder: str, weight_name: str, seed: int = 0, image_embed_dim: int = 32
) -> Path:
    """An IP-Adapter for ``unet`` in h94/IP-Adapter's layout: ``<subfolder>/<weight_name>`` (flat safetensors:
    ``image_proj.*`` for diffusers' ImageProjection with 4 tokens, ``ip_adapter.<id>.to_{k,v}_ip.weight`` with
    ids 1, 3, 5, ... over the UNet's cross-attention processors in order) and ``<subfolder>/image_encoder``."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed + 7)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=image_embed_dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    image_encoder.save_pretrained(repo / subfolder / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        repo / subfolder / "image_encoder"
    )
    gen = torch.Generator().manual_seed(seed + 1)
    tokens, text_dim = 4, unet.config.cross_attention_dim
    weights = {
        "image_proj.proj.weight": torch.randn(text_dim * tokens, image_embed_dim, generator=gen) * 0.2,
        "image_proj.proj.bias": torch.zeros(text_dim * tokens),
        "image_proj.norm.weight": torch.ones(text_dim),
        "image_proj.norm.bias": torch.zeros(text_dim),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        for kv in ("k", "v"):
            weights[f"ip_adapter.{key_id}.to_{kv}_ip.weight"] = torch.randn(hidden, text_dim, generator=gen) * 0.2
        key_id += 2
    save_file(weights, str(repo / subfolder / weight_name))
    return repo


def write_tiny_sdxl_ip_adapter(root: Path, seed: int = 0, sample_size: int = 16) -> tuple[Path, Path]:
    """An SDXL-class pipeline (two CLIP text encoders, the second with projection; UNet with text_time added
    conditioning) and an IP-Adapter for it in h94's ``sdxl_models`` layout."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    root = Path(root)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(clip_text_config(32))
    text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(32, projection_dim=32))
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=32 + 6 * 8,
        norm_num_groups=8,
    )
    vae = tiny_vae(sample_size)
    tokenizer = clip_tokenizer()  # SDXL's two tokenizers are both CLIP's
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipeline_dir = root / "tiny-sdxl"
    pipe.save_pretrained(pipeline_dir)
    ip_repo = write_tiny_ip_adapter(
        root / "tiny-ip-adapter-sdxl", unet, "sdxl_models", "ip-adapter_sdxl.safetensors", seed
    )
    return pipeline_dir, ip_repo


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="write tiny random-weight generator folders in the real layouts")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for family, write in (
        ("Stable Diffusion", write_tiny_sd_ip_adapter),
        ("SDXL", write_tiny_sdxl_ip_adapter),
        ("SD3", write_tiny_sd3_ip_adapter),
        ("FLUX", write_tiny_flux_ip_adapter),
    ):
        pipeline_dir, ip_repo = write(args.folder, args.seed)
        print(f"[tiny] {family}-class pipeline in {pipeline_dir}, its IP-Adapter in {ip_repo}")
    print(f"[tiny] OmniGen-class pipeline in {write_tiny_omnigen(args.folder, args.seed)}")


if __name__ == "__main__":
    main()
