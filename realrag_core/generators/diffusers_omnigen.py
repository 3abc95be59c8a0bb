"""OmniGen through diffusers' ``OmniGenPipeline``: the retrieved image goes into the multimodal prompt.

OmniGen is one transformer over text tokens, input-image latents and the output latents, so it needs no adapter: a
prompt with a reference is written with ``reference_prompt`` (``"{prompt}, like <img><|image_1|></img>"``) and the
reference passed as that prompt's ``input_images``; diffusers then runs three passes a step (conditional,
unconditional, image-only) mixed by ``sampling.guidance`` and ``image_guidance``. Prompts without a reference run in
their own batches as plain text-to-image (two passes a step, no ``input_images``): exactly the base pipeline.

References are resized to at most ``sampling.image_size`` on their long side (``max_input_image_size``), which keeps
the input-image tokens in proportion to the output's.

Seeds: one ``torch.Generator`` per prompt for the initial noise. diffusers encodes the input images with
``latent_dist.sample()`` from the *global* RNG, which would make image i depend on what ran before and on its batch
neighbours; for the duration of one call the pipeline's own ``encode_input_images`` is called one reference at a
time inside ``torch.random.fork_rng``, seeded from that prompt's seed (the global RNG is left as it was).
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from realrag_core.generators.base import check_generate_args
from realrag_core.generators.diffusers_ip import from_pretrained, place

REFERENCE_SEED_OFFSET = 0x5EED  # the reference's VAE sample draws from seed + this, not the initial noise's stream


def load_omnigen_pipeline(spec, device: str = "cpu"):
    return place(from_pretrained("OmniGenPipeline", spec), spec, device)


class OmniGenGenerator:
    """``generate(prompts, references | None, seeds) -> images`` over diffusers' ``OmniGenPipeline``."""

    def __init__(self, pipe, spec, generator_id: str):
        self.pipe, self.spec, self.generator_id = pipe, spec, generator_id

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def _seeded_encoder(self, seeds: list[int]):
        """The pipeline's ``encode_input_images``, one reference at a time from its prompt's seed (module doc)."""
        encode = type(self.pipe).encode_input_images.__get__(self.pipe)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []

        def encode_input_images(pixel_values, device=None, dtype=None):
            # diffusers passes each reference twice: for the conditional and the image-only pass, in prompt order
            assert len(pixel_values) % len(seeds) == 0, (len(pixel_values), len(seeds))
            out = []
            for px, seed in zip(pixel_values, seeds * (len(pixel_values) // len(seeds))):
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(seed + REFERENCE_SEED_OFFSET)
                    out += encode([px], device, dtype)
            return out

        return encode_input_images

    def _call(self, prompts: list[str], refs: list[Image.Image] | None, seeds: list[int]) -> list[Image.Image]:
        s = self.spec.sampling
        kwargs = {}
        if refs is not None:
            prompts = [self.spec.reference_prompt.replace("{prompt}", p) for p in prompts]
            kwargs = {
                "input_images": [[r.convert("RGB")] for r in refs],
                "img_guidance_scale": self.spec.image_guidance,
                "max_input_image_size": s.image_size,
            }
            self.pipe.encode_input_images = self._seeded_encoder(seeds)
        try:
            return self.pipe(
                prompt=prompts,
                num_inference_steps=s.steps,
                guidance_scale=s.guidance,
                height=s.image_size,
                width=s.image_size,
                generator=[torch.Generator("cpu").manual_seed(x) for x in seeds],
                output_type="pil",
                **kwargs,
            ).images
        finally:
            self.pipe.__dict__.pop("encode_input_images", None)  # back to the class's method

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], references: Sequence[Image.Image | None] | None, seeds: Sequence[int]
    ) -> list[Image.Image]:
        refs = check_generate_args(prompts, references, seeds)
        out: list[Image.Image | None] = [None] * len(prompts)
        for with_ref in (False, True):
            chosen = [i for i, r in enumerate(refs) if (r is not None) == with_ref]
            for start in range(0, len(chosen), self.spec.sampling.batch_size):
                idx = chosen[start : start + self.spec.sampling.batch_size]
                images = self._call(
                    [prompts[i] for i in idx],
                    [refs[i] for i in idx] if with_ref else None,
                    [int(seeds[i]) for i in idx],
                )
                for i, im in zip(idx, images):
                    out[i] = im
        return out  # type: ignore[return-value]
