"""Generators, one per ``kind``: the demo diffusion model (and its training), diffusers pipelines with IP-Adapter,
OmniGen, and an external generator."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Annotated, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from realrag_core.config.base import StrictModel, kind_or
from realrag_core.config.clip import ClipArchitecture, ClipTrainConfig


# --------------------------------------------------------------------------- the demo generator


class DemoUNetConfig(StrictModel):
    """A diffusers UNet2DConditionModel in pixel space; the reference enters as extra input channels."""

    image_size: int = Field(32, ge=8, le=128)
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    cross_attention: tuple[bool, ...] = Field((False, False, True), description="per level, finest first")
    layers_per_block: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    norm_num_groups: int = Field(8, ge=1)
    spatial_reference: bool = True
    global_text: bool = Field(
        False,
        description="also add the prompt's pooled CLIP text embedding to the timestep embedding (diffusers "
        "class_embed_type 'projection'), so every resolution sees the text, not only the cross-attention levels",
    )

    @model_validator(mode="after")
    def _shape_fits(self):
        if len(self.cross_attention) != len(self.block_out_channels):
            raise ValueError("cross_attention needs one flag per entry of block_out_channels")
        if self.image_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"image_size {self.image_size} cannot be halved {len(self.block_out_channels) - 1} times")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} not divisible by norm_num_groups {self.norm_num_groups}")
        return self


class GeneratorMix(StrictModel):
    """Training examples by condition; the remainder drops both (classifier-free guidance's null)."""

    text_and_reference: float = Field(0.3, ge=0, le=1)
    reference_only: float = Field(0.4, ge=0, le=1)
    text_only: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _sums(self):
        if self.text_and_reference + self.reference_only + self.text_only > 1 + 1e-9:
            raise ValueError("the shares add up to more than 1")
        return self


class PairedAugment(StrictModel):
    """The same random flip and shift applied to a training target and to its reference, so the layout of the
    target can be read only from the reference (a memorised concept cannot supply it)."""

    flip: bool = True
    max_shift: int = Field(2, ge=0, description="pixels in each direction; the border is filled with white")


class GeneratorTrainConfig(StrictModel):
    steps: int = Field(800, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-4, gt=0)
    seed: int = 0
    mix: GeneratorMix = GeneratorMix()
    ema_decay: float | None = Field(
        0.999,
        ge=0.0,
        lt=1.0,
        description="keep an exponential moving average of the weights (diffusers EMAModel, "
        "with warm-up) and save it; null saves the raw weights",
    )
    paired_augment: PairedAugment | None = Field(
        None, description="augment examples that have a reference, target and reference alike; null: off"
    )
    unfamiliar_text: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of text+reference examples whose caption is swapped for the caption "
        "of a concept outside the world (text only: its images are never used), so the model learns to follow the "
        "reference when the text names something it does not know, as a RAG prompt of a novel concept does; null: off",
    )
    outside_share: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of the reference-conditioned examples (text + reference and reference "
        "only) taken from the source's concepts outside the world, with their own captions and references, so the "
        "reference pathway learns to carry many concepts while the text pathway learns only the known ones; no world "
        "concept is added (known still means exactly the world concepts trained on); null: off",
    )
    styles: tuple[str, ...] | None = Field(
        None,
        description="styles whose images of known concepts it trains on; null: the database styles and its "
        "text encoder's styles",
    )
    reference_pool: Literal["other_style", "other_artist", "same_artist"] = Field(
        "other_artist",
        description="where a training example's reference comes from: any other style of its "
        "concept, only styles of another artist, or only the same artist's other styles (examples of an "
        "artist with a single style then train without a reference)",
    )


class SamplingConfig(StrictModel):
    steps: int = Field(25, ge=1)
    scheduler: Literal["ddim", "dpmsolver++", "unipc"] = Field(
        "ddim",
        description="diffusers sampler: DDIMScheduler (eta 0), DPMSolverMultistepScheduler (DPM-Solver++ 2M) "
        "or UniPCMultistepScheduler; all deterministic (bench/sweep_generator_sampling.py compares them)",
    )
    guidance: float = Field(
        3.0, ge=1.0, description="classifier-free guidance (text scale when reference_guidance is set)"
    )
    reference_guidance: float | None = Field(
        None,
        ge=1.0,
        description="InstructPix2Pix-style separate scale for the reference (3 UNet passes a step); "
        "null: one joint scale for text and reference",
    )
    batch_size: int = Field(64, ge=1)


class _GeneratorChecks(StrictModel):
    """Sizes of the generator asset's property checks, the same for every generator kind."""

    check_samples_per_concept: int = Field(2, ge=1, description="samples per concept for the property checks")
    check_max_concepts: int | None = Field(
        None, ge=1, description="at most this many concepts per split in the property checks (chosen by seed)"
    )


class TextEncoderRecipe(StrictModel):
    """The demo generator's own frozen text encoder, as real generators have theirs (SDXL's CLIP-L/G, Flux's T5),
    unrelated to the retriever's base CLIP: an open_clip model trained once with ClipLoss on ``styles`` and
    stored with the generator's weights (``<generator>/text_encoder/``). Its defaults are the recipe of the
    demo's first base CLIP, whose text tower the shipped generator was trained on."""

    architecture: ClipArchitecture = ClipArchitecture()
    train: ClipTrainConfig = ClipTrainConfig()
    styles: tuple[str, ...] = ("noto",)
    seed: int = 0


class DemoGeneratorConfig(_GeneratorChecks):
    kind: Literal["demo_diffusion"] = "demo_diffusion"
    unet: DemoUNetConfig = DemoUNetConfig()
    train: GeneratorTrainConfig = GeneratorTrainConfig()
    text_encoder: TextEncoderRecipe = TextEncoderRecipe()
    sampling: SamplingConfig = SamplingConfig()
    shipped_weights: Path | None = Field(
        None, description="a folder of weights made by the generator asset; used only if split and config match"
    )


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


class _DiffusersPipelineConfig(_GeneratorChecks):
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


class DiffusersGeneratorConfig(_DiffusersPipelineConfig):
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


class OmniGenGeneratorConfig(_DiffusersPipelineConfig):
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


class ExternalGeneratorConfig(_GeneratorChecks):
    """A generator diffusers does not ship (e.g. the paper's Emu2-Gen), behind the same protocol: ``factory`` names
    a callable ``(options: dict, device: str) -> Generator`` as ``package.module:function``."""

    kind: Literal["external"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="package.module:function")
    options: dict = Field(default_factory=dict, description="passed to the factory as they are")
    sampling: DiffusersSamplingConfig = DiffusersSamplingConfig()


GeneratorConfig = Annotated[
    Union[
        Annotated[DemoGeneratorConfig, Tag("demo_diffusion")],
        Annotated[DiffusersGeneratorConfig, Tag("diffusers_ip_adapter")],
        Annotated[OmniGenGeneratorConfig, Tag("diffusers_omnigen")],
        Annotated[ExternalGeneratorConfig, Tag("external")],
    ],
    Discriminator(kind_or("demo_diffusion")),
]
