"""Real text-to-image models through diffusers, the retrieved image injected with IP-Adapter.

Routes (which diffusers mechanism carries the reference, and why):
- ``sd`` (Stable Diffusion 1.x/2.x-class UNets) and ``sdxl``: ``StableDiffusionPipeline`` /
  ``StableDiffusionXLPipeline`` + ``load_ip_adapter`` (h94/IP-Adapter): the reference's CLIP image embedding
  becomes 4 extra cross-attention tokens read by decoupled attention, scaled by ``ip_adapter.scale``. The
  paper's SD/SDXL baselines are conditioned this way, and it needs no fine-tuning of the base model.
- ``sd3`` (Stable Diffusion 3/3.5 MMDiT): ``StableDiffusion3Pipeline`` + ``SD3IPAdapterMixin.load_ip_adapter``
  (InstantX/SD3.5-Large-IP-Adapter): the reference's SigLIP penultimate hidden states go through a
  timestep-conditioned resampler (``transformer.image_proj``) and a per-block IP attention added to the joint
  attention. ``ip_adapter.image_encoder_folder`` names the SigLIP encoder's own hub id or folder
  (google/siglip-so400m-patch14-384 for the real adapter), which is how diffusers' SD3 loader takes it.
- ``flux`` (FLUX.1): ``FluxPipeline`` + ``FluxIPAdapterMixin.load_ip_adapter`` (XLabs-AI/flux-ip-adapter): the
  CLIP image embedding becomes 4 tokens read by IP attention in each double-stream block;
  ``ip_adapter.image_encoder_folder`` names the CLIP ViT-L/14 (openai/clip-vit-large-patch14), which XLabs does not
  ship. Guidance: ``sampling.guidance`` is FLUX.1-dev's distilled guidance (``guidance_scale``, an embedding input of
  the transformer, one pass per step); true CFG (``true_cfg_scale`` with a negative prompt and
  ``negative_ip_adapter_image``, two passes per step) is not used, so the reference enters the one conditional pass
  only and the negative embeddings diffusers prepares are never read.
- OmniGen has no IP-Adapter: it reads the reference inside its multimodal prompt (``diffusers_omnigen.py``).

Per-prompt references: the pipelines take one reference for a whole batch (``ip_adapter_image`` is one image
per *adapter*, and ``prepare_ip_adapter_image_embeds`` tiles the given embeddings batch-size times, so distinct
per-prompt embeddings would leak between prompts: a test caught exactly that). The generator therefore encodes
each prompt's reference with the pipeline's own ``encode_image`` (zeros as the unconditional half, as diffusers
does) and, for the duration of one call, has ``prepare_ip_adapter_image_embeds`` return those per-prompt
embeddings in the layout the denoiser reads (SD/SDXL: [negatives; positives], one image each; SD3: a tensor
[negatives (zeros); positives] of hidden states; FLUX: [batch, one image, dim], no negatives). Prompts without a reference
run in their own batches at IP-Adapter scale 0, which makes the decoupled attention add exactly nothing: the
``none`` arm is the base model.

Seeds: one ``torch.Generator`` per prompt, so image i depends on (prompt i, reference i, seed i).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from PIL import Image

from realrag_core.generators.base import check_generate_args

PIPELINES = {
    "sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def hub_kwargs(spec) -> dict:
    """Cache folder and token (read from the environment variable the config names, never from a file)."""
    token = os.environ.get(spec.token_env) if spec.token_env else None
    return {"cache_dir": str(spec.cache_dir) if spec.cache_dir else None, "token": token}


def from_pretrained(class_name: str, spec):
    """``diffusers.<class_name>.from_pretrained`` with the configured revision, dtype, cache folder and token."""
    import diffusers

    return getattr(diffusers, class_name).from_pretrained(
        spec.model, revision=spec.revision, dtype=DTYPES[spec.dtype], **hub_kwargs(spec)
    )


def denoiser(pipe):
    """The UNet or the diffusion transformer."""
    return pipe.unet if "unet" in pipe.components else pipe.transformer


def place(pipe, spec, device: str):
    """Device (or model CPU offload), optional ``torch.compile`` of the denoiser, no progress bars."""
    if spec.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if spec.compile:
        setattr(pipe, "unet" if "unet" in pipe.components else "transformer", torch.compile(denoiser(pipe)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(spec, device: str = "cpu"):
    """``from_pretrained`` for the family's pipeline, then its ``load_ip_adapter`` (see the module doc for where
    each family's image encoder comes from)."""
    pipe, ip, common = from_pretrained(PIPELINES[spec.family], spec), spec.ip_adapter, hub_kwargs(spec)
    if spec.family == "flux":
        pipe.load_ip_adapter(
            ip.repo,
            weight_name=ip.weight_name,
            subfolder=ip.subfolder,
            revision=ip.revision,
            image_encoder_pretrained_model_name_or_path=ip.image_encoder_folder,
            image_encoder_dtype=DTYPES[spec.dtype],
            **common,
        )
    else:
        pipe.load_ip_adapter(
            ip.repo,
            subfolder=ip.subfolder,
            weight_name=ip.weight_name,
            image_encoder_folder=ip.image_encoder_folder,
            revision=ip.revision,
            **common,
        )
    return place(pipe, spec, device)


class DiffusersIPAdapterGenerator:
    """``generate(prompts, references | None, seeds) -> images`` over a diffusers pipeline with an IP-Adapter."""

    def __init__(self, pipe, spec, generator_id: str):
        self.pipe, self.spec, self.generator_id = pipe, spec, generator_id

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @torch.no_grad()
    def _reference_embeds(self, references: list[Image.Image | None], guided: bool) -> torch.Tensor:
        """The per-prompt layout each family's IP-Adapter reads (module doc)."""
        from diffusers.models.embeddings import ImageProjection

        images = [r if r is not None else Image.new("RGB", (64, 64)) for r in references]
        if self.spec.family == "sd3":  # zeros as the unconditional half, as diffusers does
            embeds = self.pipe.encode_image(images, self.device)
            return torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds
        if self.spec.family == "flux":
            return self.pipe.encode_image(images, self.device, 1)[:, None]
        proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        embeds, negative = self.pipe.encode_image(images, self.device, 1, not isinstance(proj, ImageProjection))
        embeds, negative = embeds[:, None], negative[:, None]
        return torch.cat([negative, embeds]) if guided else embeds

    def _call(self, prompts: list[str], embeds: torch.Tensor, generators: list[torch.Generator]):
        s = self.spec.sampling
        embeds = embeds if self.spec.family == "sd3" else [embeds]  # SD3 takes a tensor, the others one per adapter
        self.pipe.prepare_ip_adapter_image_embeds = lambda *args, **kwargs: embeds  # per prompt, see module doc
        try:
            return self.pipe(
                prompt=prompts,
                ip_adapter_image_embeds=embeds,
                num_inference_steps=s.steps,
                guidance_scale=s.guidance,
                generator=generators,
                height=s.image_size,
                width=s.image_size,
                output_type="pil",
            ).images
        finally:
            del self.pipe.prepare_ip_adapter_image_embeds  # back to the class's method

    def generate(
        self, prompts: Sequence[str], references: Sequence[Image.Image | None] | None, seeds: Sequence[int]
    ) -> list[Image.Image]:
        refs = check_generate_args(prompts, references, seeds)
        out: list[Image.Image | None] = [None] * len(prompts)
        s = self.spec.sampling
        guided = s.guidance > 1.0 and self.spec.family != "flux"  # FLUX: distilled guidance, one pass (module doc)
        for with_ref in (False, True):
            chosen = [i for i, r in enumerate(refs) if (r is not None) == with_ref]
            self.pipe.set_ip_adapter_scale(self.spec.ip_adapter.scale if with_ref else 0.0)
            for start in range(0, len(chosen), s.batch_size):
                idx = chosen[start : start + s.batch_size]
                generators = [torch.Generator("cpu").manual_seed(int(seeds[i])) for i in idx]
                embeds = self._reference_embeds([refs[i] for i in idx], guided)
                images = self._call([prompts[i] for i in idx], embeds.to(denoiser(self.pipe).dtype), generators)
                for i, im in zip(idx, images):
                    out[i] = im
        return out  # type: ignore[return-value]
