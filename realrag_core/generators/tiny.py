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

import gzip
import json
import tempfile
from pathlib import Path

import torch

SD_IP_SUBFOLDER = "models"
SD_IP_WEIGHT = "ip-adapter_sd15.safetensors"


def clip_tokenizer_files(folder: Path) -> Path:
    """CLIP's BPE vocabulary (49,408 tokens) as ``vocab.json`` + ``merges.txt``, from open_clip's bundled merges,
    built the way CLIP's tokenizer builds it (bytes, bytes + </w>, merges, two specials)."""
    import open_clip.tokenizer as oct

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(oct.default_bpe(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    return folder


def clip_tokenizer():
    """transformers' ``CLIPTokenizer`` over CLIP's real BPE vocabulary (see :func:`clip_tokenizer_files`)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        files = clip_tokenizer_files(Path(tmp))
        return CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=77)


def clip_text_config(hidden: int, **extra):
    """A tiny ``CLIPTextConfig`` with CLIP's vocabulary, context length and special tokens."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                          pad_token_id=49407, **extra)  # fmt: skip


def tiny_vae(sample_size: int):
    """A two-level ``AutoencoderKL`` (4 latent channels, downsampling x2)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8, sample_size=sample_size * 2,
    )  # fmt: skip


def write_tiny_sd_ip_adapter(root: Path, seed: int = 0, sample_size: int = 16, text_dim: int = 32,
                             image_embed_dim: int = 32) -> tuple[Path, Path]:  # fmt: skip
    """A Stable-Diffusion-1.5-class pipeline (UNet with cross-attention, KL VAE, CLIP text model and tokenizer,
    DDIM scheduler) and an IP-Adapter for it. Returns (pipeline folder, IP-Adapter repository folder)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    root = Path(root)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=text_dim,
        attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    vae = tiny_vae(sample_size)
    text_encoder = CLIPTextModel(clip_text_config(text_dim))
    tokenizer = clip_tokenizer()
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipeline_dir = root / "tiny-sd"
    pipe.save_pretrained(pipeline_dir)

    ip_repo = write_tiny_ip_adapter(root / "tiny-ip-adapter", unet, SD_IP_SUBFOLDER, SD_IP_WEIGHT, seed,
                                    image_embed_dim)  # fmt: skip
    return pipeline_dir, ip_repo


def write_tiny_ip_adapter(repo: Path, unet, subfolder: str, weight_name: str, seed: int = 0,
                          image_embed_dim: int = 32) -> Path:  # fmt: skip
    """An IP-Adapter for ``unet`` in h94/IP-Adapter's layout: ``<subfolder>/<weight_name>`` (flat safetensors:
    ``image_proj.*`` for diffusers' ImageProjection with 4 tokens, ``ip_adapter.<id>.to_{k,v}_ip.weight`` with
    ids 1, 3, 5, ... over the UNet's cross-attention processors in order) and ``<subfolder>/image_encoder``."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed + 7)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, projection_dim=image_embed_dim, num_hidden_layers=2,
        num_attention_heads=4, image_size=32, patch_size=8,
    ))  # fmt: skip
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
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64, attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=32 + 6 * 8, norm_num_groups=8,
    )  # fmt: skip
    vae = tiny_vae(sample_size)
    tokenizer = clip_tokenizer()  # SDXL's two tokenizers are both CLIP's
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")  # fmt: skip
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)  # fmt: skip
    pipeline_dir = root / "tiny-sdxl"
    pipe.save_pretrained(pipeline_dir)
    ip_repo = write_tiny_ip_adapter(root / "tiny-ip-adapter-sdxl", unet, "sdxl_models", "ip-adapter_sdxl.safetensors",
                                    seed)  # fmt: skip
    return pipeline_dir, ip_repo


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="write tiny random-weight generator folders in the real layouts")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for family, write in (("Stable Diffusion", write_tiny_sd_ip_adapter), ("SDXL", write_tiny_sdxl_ip_adapter)):
        pipeline_dir, ip_repo = write(args.folder, args.seed)
        print(f"[tiny] {family}-class pipeline in {pipeline_dir}, its IP-Adapter in {ip_repo}")


if __name__ == "__main__":
    main()
