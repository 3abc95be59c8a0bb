"""Tiny random-weight transformer generators in their real layouts: Stable Diffusion 3 and FLUX with IP-Adapters in
InstantX's and XLabs' formats, and OmniGen. Random weights check plumbing, never quality."""

from __future__ import annotations

from pathlib import Path
import torch
from realrag_core.testing.tiny_parts import (
    clip_text_config,
    clip_tokenizer,
    llama_tokenizer,
    t5_encoder,
    t5_tokenizer,
    tiny_vae,
)


SD3_IP_WEIGHT = "ip-adapter.safetensors"

FLUX_IP_WEIGHT = "ip_adapter.safetensors"


def write_tiny_sd3_ip_adapter(root: Path, seed: int = 0, sample_size: int = 16) -> tuple[Path, Path]:
    """A Stable-Diffusion-3-class pipeline (``SD3Transformer2DModel``, two CLIP text encoders with projection and a
    T5 encoder, flow-matching scheduler) and an IP-Adapter for it in InstantX/SD3.5-Large-IP-Adapter's format:
    ``ip-adapter.safetensors`` holding ``image_proj.*`` (the time-conditioned resampler, 4 blocks, InstantX's own
    key names that diffusers converts) and ``ip_adapter.<block>.*`` (one joint-attention processor per block), and a
    SigLIP vision encoder + image processor in ``image_encoder`` (the real adapter names google/siglip-so400m-patch14-384
    for it). Returns (pipeline folder, IP-Adapter repository folder)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterTimeImageProjection
    from safetensors.torch import save_file
    from transformers import CLIPTextModelWithProjection, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    root = Path(root)
    torch.manual_seed(seed)
    heads, head_dim = 4, 8
    transformer = SD3Transformer2DModel(
        sample_size=sample_size,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        pos_embed_max_size=2 * sample_size,
    )
    tokenizer_3 = t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(
            sample_size, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035
        ),
        text_encoder=CLIPTextModelWithProjection(clip_text_config(32, projection_dim=32)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(clip_text_config(32, projection_dim=32)),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(len(tokenizer_3), 64),
        tokenizer_3=tokenizer_3,
    )
    pipeline_dir = root / "tiny-sd3"
    pipe.save_pretrained(pipeline_dir)

    repo = root / "tiny-ip-adapter-sd3"
    torch.manual_seed(seed + 7)
    encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    encoder.save_pretrained(repo / "image_encoder")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(repo / "image_encoder")
    hidden = heads * head_dim
    proj = IPAdapterTimeImageProjection(
        embed_dim=32, output_dim=hidden, hidden_dim=64, heads=1, num_queries=4, timestep_in_dim=32
    )
    instantx = {
        ".ln0": ".0.norm1",
        ".ln1": ".0.norm2",
        ".attn.to_q": ".0.to_q",
        ".attn.to_kv": ".0.to_kv",
        ".attn.to_out.0": ".0.to_out",
        ".adaln_norm": ".1.0",
        ".ff.net.0.proj": ".1.1",
        ".ff.net.2": ".1.3",
        ".adaln_proj": ".2.1",
    }
    weights = {}
    for key, value in proj.state_dict().items():
        for ours, theirs in instantx.items():
            key = key.replace(ours, theirs) if key.startswith("layers.") else key
        weights[f"image_proj.{key}"] = value
    for block in range(transformer.config.num_layers):
        proc = SD3IPAdapterJointAttnProcessor2_0(
            hidden_size=hidden, ip_hidden_states_dim=hidden, head_dim=head_dim, timesteps_emb_dim=64
        )
        with torch.no_grad():
            proc.to_v_ip.weight.mul_(8)  # default init is faint next to the joint attention: make the reference show
        weights.update({f"ip_adapter.{block}.{k}": v for k, v in proc.state_dict().items()})
    save_file({k: v.contiguous() for k, v in weights.items()}, str(repo / SD3_IP_WEIGHT))
    return pipeline_dir, repo


def write_tiny_flux_ip_adapter(root: Path, seed: int = 0, sample_size: int = 16) -> tuple[Path, Path]:
    """A FLUX.1-class pipeline (``FluxTransformer2DModel`` with guidance embedding, CLIP text encoder for the pooled
    vector, T5 encoder for the sequence, flow-matching scheduler, 2x2-packed latents) and an IP-Adapter for it in
    XLabs-AI/flux-ip-adapter's format: ``ip_adapter.safetensors`` holding ``ip_adapter_proj_model.{proj,norm}.*``
    (4 image tokens) and ``double_blocks.<i>.processor.ip_adapter_double_stream_{k,v}_proj.*`` (one per
    double-stream block), and a CLIP vision encoder with projection in ``image_encoder`` (the real adapter names
    openai/clip-vit-large-patch14 for it). Returns (pipeline folder, IP-Adapter repository folder)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    root = Path(root)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    tokenizer_2 = t5_tokenizer()
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(
            sample_size, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611
        ),
        text_encoder=CLIPTextModel(clip_text_config(32)),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(len(tokenizer_2), 32),
        tokenizer_2=tokenizer_2,
    )
    pipeline_dir = root / "tiny-flux"
    pipe.save_pretrained(pipeline_dir)

    repo = root / "tiny-ip-adapter-flux"
    torch.manual_seed(seed + 7)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(repo / "image_encoder")
    gen = torch.Generator().manual_seed(seed + 1)
    inner, context = transformer.inner_dim, transformer.config.joint_attention_dim
    weights = {
        "ip_adapter_proj_model.proj.weight": torch.randn(4 * context, 32, generator=gen) * 0.2,
        "ip_adapter_proj_model.proj.bias": torch.zeros(4 * context),
        "ip_adapter_proj_model.norm.weight": torch.ones(context),
        "ip_adapter_proj_model.norm.bias": torch.zeros(context),
    }
    for block in range(transformer.config.num_layers):
        for kv in ("k", "v"):
            name = f"double_blocks.{block}.processor.ip_adapter_double_stream_{kv}_proj"
            weights[f"{name}.weight"] = torch.randn(inner, context, generator=gen) * 0.2
            weights[f"{name}.bias"] = torch.zeros(inner)
    save_file(weights, str(repo / FLUX_IP_WEIGHT))
    return pipeline_dir, repo


def write_tiny_omnigen(root: Path, seed: int = 0, sample_size: int = 8) -> Path:
    """An OmniGen-class pipeline: ``OmniGenTransformer2DModel`` (a Phi-3-style decoder over text tokens, input-image
    latents and the output latents, su-scaled RoPE), an SDXL-style ``AutoencoderKL`` with 4 levels (scale factor 8),
    a LLaMA/Phi-3-layout tokenizer, flow-matching scheduler. Returns the pipeline folder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, OmniGenPipeline, OmniGenTransformer2DModel

    root = Path(root)
    torch.manual_seed(seed)
    tokenizer = llama_tokenizer()
    heads, hidden = 4, 32
    transformer = OmniGenTransformer2DModel(
        in_channels=4,
        patch_size=2,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=64,
        num_layers=2,
        pad_token_id=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        original_max_position_embeddings=1024,
        pos_embed_max_size=4 * sample_size,
        time_step_dim=32,
        rope_scaling={"short_factor": [1.0] * (hidden // heads // 2), "long_factor": [1.0] * (hidden // heads // 2)},
    )
    vae = tiny_vae(sample_size, levels=4, scaling_factor=4.0)  # random latents are ~0.25: lift them to unit scale
    pipe = OmniGenPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, tokenizer=tokenizer
    )
    pipeline_dir = root / "tiny-omnigen"
    pipe.save_pretrained(pipeline_dir)
    return pipeline_dir
