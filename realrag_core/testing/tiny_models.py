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

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        **extra,
    )


def tiny_vae(sample_size: int, levels: int = 2, **extra):
    """An ``AutoencoderKL`` with 4 latent channels and ``levels`` levels (downsampling x2^(levels-1))."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32, 32, 32)[:levels],
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        norm_num_groups=8,
        sample_size=sample_size * 2 ** (levels - 1),
        **extra,
    )


def clip_words(count: int) -> list[str]:
    """The first ``count`` whole words of CLIP's BPE merges (open_clip's bundled file), in merge order."""
    import open_clip.tokenizer as oct

    words: list[str] = []
    with gzip.open(oct.default_bpe(), "rt", encoding="utf-8") as f:
        for line in f.read().split("\n")[1:]:
            word = "".join(line.split())
            if word.endswith("</w>") and word[:-4].isalpha() and len(word) > 5 and word[:-4] not in words:
                words.append(word[:-4])
                if len(words) == count:
                    break
    return words


def t5_tokenizer(words: int = 2000):
    """transformers' ``T5Tokenizer`` (a ``tokenizers`` Unigram model, T5's layout: <pad>=0, </s>=1, <unk>=2) over
    printable ASCII characters and CLIP's commonest whole words, scored by merge order; no sentinel ids."""
    import string

    from transformers import T5Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    pieces = [("▁", -2.0)] + [(f"▁{c}", -8.0) for c in chars] + [(c, -9.0) for c in chars]
    pieces += [(f"▁{w}", -3.0 - 4.0 * i / words) for i, w in enumerate(clip_words(words))]
    return T5Tokenizer(
        vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces, extra_ids=0, model_max_length=512
    )


def t5_encoder(vocab_size: int, d_model: int):
    """A tiny ``T5EncoderModel`` (2 layers)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=d_model,
            d_ff=64,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
        )
    )


PHI3_SPECIALS = ["<|user|>", "<|assistant|>", "<|end|>", "<|diffusion|>"]


def llama_tokenizer(vocab_size: int = 1500):
    """transformers' ``LlamaTokenizer`` in LLaMA/Phi-3's layout (<unk>=0, <s>=1, </s>=2, the 256 byte-fallback
    tokens, BPE pieces with the ``▁`` word prefix, Phi-3's chat markers as special tokens), its BPE trained here with
    ``tokenizers`` on CLIP's commonest words plus the instruction and negative prompt OmniGen's processor writes."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    corpus = clip_words(3000) + ["Generate an image according to the following instructions", "a photo of a"]
    corpus += [
        "low quality, jpeg artifacts, ugly, duplicate, morbid, mutilated, extra fingers, mutated hands, poorly "
        "drawn hands, poorly drawn face, mutation, deformed, blurry, dehydrated, bad anatomy, bad proportions, "
        "extra limbs, cloned face, disfigured, gross proportions, malformed limbs, missing arms, missing legs, "
        "extra arms, extra legs, fused fingers, too many fingers."
    ]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            show_progress=False,
            initial_alphabet=list(string.printable.strip()),
        ),
    )
    model = json.loads(bpe.to_str())["model"]
    tok = LlamaTokenizer(
        vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], add_bos_token=True, model_max_length=4096
    )
    tok.add_special_tokens({"additional_special_tokens": PHI3_SPECIALS})
    return tok


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
