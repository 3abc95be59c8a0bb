"""Real text-to-image models through diffusers, the retrieved image injected with IP-Adapter.

Routes (which diffusers mechanism carries the reference, and why):
- ``sd`` (Stable Diffusion 1.x/2.x-class UNets) and ``sdxl``: ``StableDiffusionPipeline`` /
  ``StableDiffusionXLPipeline`` + ``load_ip_adapter`` (h94/IP-Adapter): the reference's CLIP image embedding
  becomes 4 extra cross-attention tokens read by decoupled attention, scaled by ``ip_adapter.scale``. The
  paper's SD/SDXL baselines are conditioned this way, and it needs no fine-tuning of the base model.

Per-prompt references: the pipelines take one reference for a whole batch (``ip_adapter_image`` is one image
per *adapter*, and ``prepare_ip_adapter_image_embeds`` tiles the given embeddings batch-size times, so distinct
per-prompt embeddings would leak between prompts: a test caught exactly that). The generator therefore encodes
each prompt's reference with the pipeline's own ``encode_image`` (zeros as the unconditional half, as diffusers
does) and, for the duration of one call, has ``prepare_ip_adapter_image_embeds`` return those per-prompt
embeddings in the layout the UNet reads ([negatives; positives], one image each). Prompts without a reference
run in their own batches at IP-Adapter scale 0, which makes the decoupled attention add exactly nothing: the
``none`` arm is the base model.

Seeds: one ``torch.Generator`` per prompt, so image i depends on (prompt i, reference i, seed i).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from PIL import Image

from .base import check_generate_args

PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_pipeline(spec, device: str = "cpu"):
    """``from_pretrained`` with the configured revision, dtype, cache folder and token (read from the
    environment variable the config names, never from a file), then ``load_ip_adapter``."""
    import diffusers

    token = os.environ.get(spec.token_env) if spec.token_env else None
    common = {"cache_dir": str(spec.cache_dir) if spec.cache_dir else None, "token": token}
    pipe = getattr(diffusers, PIPELINES[spec.family]).from_pretrained(
        spec.model, revision=spec.revision, dtype=DTYPES[spec.dtype], **common
    )
    ip = spec.ip_adapter
    pipe.load_ip_adapter(ip.repo, subfolder=ip.subfolder, weight_name=ip.weight_name,
                         image_encoder_folder=ip.image_encoder_folder, revision=ip.revision, **common)  # fmt: skip
    if spec.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if spec.compile:
        pipe.unet = torch.compile(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersIPAdapterGenerator:
    """``generate(prompts, references | None, seeds) -> images`` over a diffusers pipeline with an IP-Adapter."""

    def __init__(self, pipe, spec, generator_id: str):
        self.pipe, self.spec, self.generator_id = pipe, spec, generator_id

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @torch.no_grad()
    def _reference_embeds(self, references: list[Image.Image | None], guided: bool) -> torch.Tensor:
        """[2 x batch (negatives; positives) or batch, 1 image, ...]: the layout the UNet's IP-Adapter reads."""
        from diffusers.models.embeddings import ImageProjection

        proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        images = [r if r is not None else Image.new("RGB", (64, 64)) for r in references]
        embeds, negative = self.pipe.encode_image(images, self.device, 1, not isinstance(proj, ImageProjection))
        embeds, negative = embeds[:, None], negative[:, None]
        return torch.cat([negative, embeds]) if guided else embeds

    def _call(self, prompts: list[str], embeds: torch.Tensor, generators: list[torch.Generator]):
        s = self.spec.sampling
        self.pipe.prepare_ip_adapter_image_embeds = lambda *args, **kwargs: [embeds]  # per prompt, see module doc
        try:
            return self.pipe(
                prompt=prompts, ip_adapter_image_embeds=[embeds], num_inference_steps=s.steps,
                guidance_scale=s.guidance, generator=generators, height=s.image_size, width=s.image_size,
                output_type="pil",
            ).images  # fmt: skip
        finally:
            del self.pipe.prepare_ip_adapter_image_embeds  # back to the class's method

    def generate(self, prompts: Sequence[str], references: Sequence[Image.Image | None] | None,
                 seeds: Sequence[int]) -> list[Image.Image]:  # fmt: skip
        refs = check_generate_args(prompts, references, seeds)
        out: list[Image.Image | None] = [None] * len(prompts)
        s = self.spec.sampling
        guided = s.guidance > 1.0
        for with_ref in (False, True):
            chosen = [i for i, r in enumerate(refs) if (r is not None) == with_ref]
            self.pipe.set_ip_adapter_scale(self.spec.ip_adapter.scale if with_ref else 0.0)
            for start in range(0, len(chosen), s.batch_size):
                idx = chosen[start : start + s.batch_size]
                generators = [torch.Generator("cpu").manual_seed(int(seeds[i])) for i in idx]
                embeds = self._reference_embeds([refs[i] for i in idx], guided)
                images = self._call([prompts[i] for i in idx], embeds.to(self.pipe.unet.dtype), generators)
                for i, im in zip(idx, images):
                    out[i] = im
        return out  # type: ignore[return-value]
