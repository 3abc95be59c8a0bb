"""Pretrained diffusers text-to-image pipelines (SD, SDXL, SD3, FLUX) with the reference injected by IP-Adapter
(``generators/diffusers_ip.py``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from realrag_core.config.base import StrictModel
from realrag_core.generators.kind import GeneratorChecks
from realrag_core.generators.pretrained import pretrained_kind


class IPAdapterConfig(StrictModel):
    """Where diffusers' ``load_ip_adapter`` finds the adapter (hub id or local folder, same layout)."""

    repo: str = "h94/IP-Adapter"
    subfolder: str = "models"
    weight_name: str = "ip-adapter_sd15.safetensors"
    image_encoder_folder: str | None = Field(
        "image_encoder",
        description="sd/sdxl: relative to subfolder, or 'models/image_encoder' for the ViT-H SDXL "
        "adapters; sd3/flux: the encoder's own hub id or absolute folder (google/siglip-so400m-patch14-384 for "
        "InstantX's SD3.5 adapter, openai/clip-vit-large-patch14 for XLabs' FLUX adapter)",
    )
    revision: str | None = Field(None, description="pin a commit of the adapter repository")
    scale: float = Field(0.6, ge=0.0, description="IP-Adapter scale for prompts with a reference")


class DiffusersSamplingConfig(StrictModel):
    steps: int = Field(30, ge=1)
    guidance: float = Field(7.5, ge=1.0, description="classifier-free guidance scale")
    image_size: int = Field(512, ge=8)
    batch_size: int = Field(4, ge=1)


class DiffusersPipelineConfig(GeneratorChecks):
    """What every pretrained diffusers pipeline shares: where its weights are, their dtype, how to sample."""

    cache_folder: ClassVar[str] = "huggingface/hub"  # under model_cache
    model: str = Field(description="diffusers model id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or a folder")
    revision: str | None = Field(None, description="pin a commit of the model repository")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="bfloat16/float16 on GPUs")
    cache_dir: Path | None = Field(None, description="one shared Hugging Face cache folder (null: HF_HOME's)")
    token_env: str | None = Field("HF_TOKEN", description="environment variable holding a token for gated models")
    sampling: DiffusersSamplingConfig = DiffusersSamplingConfig()
    cpu_offload: bool = Field(False, description="diffusers enable_model_cpu_offload (saves GPU memory)")
    compile: bool = Field(False, description="torch.compile the UNet / diffusion transformer")


_IP_ADAPTER_EXAMPLES = {
    "sd3": "repo InstantX/SD3.5-Large-IP-Adapter, subfolder '', weight_name ip-adapter.bin, image_encoder_folder "
    "google/siglip-so400m-patch14-384",
    "flux": "repo XLabs-AI/flux-ip-adapter, subfolder '', weight_name ip_adapter.safetensors, image_encoder_folder "
    "openai/clip-vit-large-patch14",
}


class DiffusersGeneratorConfig(DiffusersPipelineConfig):
    """A pretrained diffusers text-to-image pipeline with the reference injected by IP-Adapter."""

    kind: Literal["diffusers_ip_adapter"]
    family: Literal["sd", "sdxl", "sd3", "flux"] = Field(
        "sd",
        description="sd: SD 1.x/2.x-class UNets; sdxl: SDXL; sd3: SD3/3.5 (InstantX adapter); flux: FLUX.1 "
        "(XLabs adapter)",
    )
    ip_adapter: IPAdapterConfig = IPAdapterConfig()

    @model_validator(mode="after")
    def _adapter_fits_family(self):
        if self.family in _IP_ADAPTER_EXAMPLES:
            ip, example = self.ip_adapter, _IP_ADAPTER_EXAMPLES[self.family]
            if ip.repo == "h94/IP-Adapter":
                raise ValueError(
                    f"family {self.family}: h94/IP-Adapter has no adapter for it; set ip_adapter (e.g. {example})"
                )
            if not ip.image_encoder_folder or "/" not in ip.image_encoder_folder:
                raise ValueError(
                    f"family {self.family}: ip_adapter.image_encoder_folder must name the image encoder's "
                    f"own hub id or absolute folder, got {ip.image_encoder_folder!r} (e.g. {example})"
                )
        return self


def pipeline_digest(spec) -> str:
    """A hash of every setting that changes a pipeline's images (where and how fast it runs never enters)."""
    speed_only = {
        "cpu_offload": True,
        "compile": True,
        "cache_dir": True,
        "token_env": True,
        "sampling": {"batch_size"},
    }  # where and how fast, never which images (batch neighbours are tested)
    return hashlib.sha256(
        json.dumps(spec.model_dump(mode="json", exclude=speed_only), sort_keys=True).encode()
    ).hexdigest()[:12]


def generator_id(spec: DiffusersGeneratorConfig) -> str:
    """Names the model, its revision and the IP-Adapter weights; the hash covers every setting that changes images."""
    digest = pipeline_digest(spec)
    return f"diffusers:{spec.family}:{spec.model}@{spec.revision or 'unpinned'}+{spec.ip_adapter.weight_name}:{digest}"


def open_generator(spec: DiffusersGeneratorConfig, device: str):
    from realrag_core.generators.diffusers_ip import DiffusersIPAdapterGenerator, denoiser, load_pipeline

    gid = generator_id(spec)
    pipe = load_pipeline(spec, device)
    gen = DiffusersIPAdapterGenerator(pipe, spec, gid)
    info = {"kind": spec.kind, "generator_id": gid, "model": spec.model, "revision": spec.revision, "dtype": spec.dtype}
    info.update(family=spec.family, ip_adapter=spec.ip_adapter.model_dump(mode="json"))
    return gen, {**info, "params": sum(p.numel() for p in denoiser(pipe).parameters())}


KIND = pretrained_kind(DiffusersGeneratorConfig, open_generator, generator_id)
