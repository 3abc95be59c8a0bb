"""OmniGen through diffusers' ``OmniGenPipeline``: the reference is an image inside the multimodal prompt
(``generators/diffusers_omnigen.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from realrag_core.generators.kinds.diffusers_ip_adapter import (
    DiffusersPipelineConfig,
    DiffusersSamplingConfig,
    pipeline_digest,
)
from realrag_core.generators.pretrained import pretrained_kind


class OmniGenGeneratorConfig(DiffusersPipelineConfig):
    """OmniGen (diffusers ``OmniGenPipeline``): the reference is an image inside the multimodal prompt."""

    kind: Literal["diffusers_omnigen"]
    model: str = Field(description="diffusers OmniGen model id (e.g. Shitao/OmniGen-v1-diffusers) or a folder")
    reference_prompt: str = Field(
        "{prompt}, like <img><|image_1|></img>",
        description="the prompt for prompts with a reference: must hold "
        "{prompt} and OmniGen's image placeholder <img><|image_1|></img>",
    )
    image_guidance: float = Field(1.6, ge=1.0, description="OmniGen's img_guidance_scale for prompts with a reference")
    sampling: DiffusersSamplingConfig = DiffusersSamplingConfig(steps=50, guidance=2.5, image_size=1024)

    @field_validator("reference_prompt")
    @classmethod
    def _has_placeholders(cls, v: str) -> str:
        if v.count("{prompt}") != 1 or v.count("<img><|image_1|></img>") != 1:
            raise ValueError("must hold {prompt} and <img><|image_1|></img> once each")
        return v


def generator_id(spec: OmniGenGeneratorConfig) -> str:
    """Names the model, its revision and OmniGen's own image input; the hash covers every setting that changes images."""
    return f"diffusers:omnigen:{spec.model}@{spec.revision or 'unpinned'}+input_images:{pipeline_digest(spec)}"


def open_generator(spec: OmniGenGeneratorConfig, device: str):
    from realrag_core.generators.diffusers_ip import denoiser
    from realrag_core.generators.diffusers_omnigen import OmniGenGenerator, load_omnigen_pipeline

    gid = generator_id(spec)
    pipe = load_omnigen_pipeline(spec, device)
    gen = OmniGenGenerator(pipe, spec, gid)
    info = {"kind": spec.kind, "generator_id": gid, "model": spec.model, "revision": spec.revision, "dtype": spec.dtype}
    info.update(family="omnigen", reference_prompt=spec.reference_prompt)
    return gen, {**info, "params": sum(p.numel() for p in denoiser(pipe).parameters())}


KIND = pretrained_kind(OmniGenGeneratorConfig, open_generator, generator_id)
