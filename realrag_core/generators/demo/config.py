"""The demo generator's config section: its UNet, training mix, own text encoder and sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from realrag_core.config.base import StrictModel
from realrag_core.config.clip import ClipArchitecture, ClipTrainConfig
from realrag_core.generators.kind import GeneratorChecks


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


class TextEncoderRecipe(StrictModel):
    """The demo generator's own frozen text encoder, as real generators have theirs (SDXL's CLIP-L/G, Flux's T5),
    unrelated to the retriever's base CLIP: an open_clip model trained once with ClipLoss on ``styles`` and
    stored with the generator's weights (``<generator>/text_encoder/``). Its defaults are the recipe of the
    demo's first base CLIP, whose text tower the shipped generator was trained on."""

    architecture: ClipArchitecture = ClipArchitecture()
    train: ClipTrainConfig = ClipTrainConfig()
    styles: tuple[str, ...] = ("noto",)
    seed: int = 0


class DemoGeneratorConfig(GeneratorChecks):
    kind: Literal["demo_diffusion"] = "demo_diffusion"
    unet: DemoUNetConfig = DemoUNetConfig()
    train: GeneratorTrainConfig = GeneratorTrainConfig()
    text_encoder: TextEncoderRecipe = TextEncoderRecipe()
    sampling: SamplingConfig = SamplingConfig()
    shipped_weights: Path | None = Field(
        None, description="a folder of weights made by the generator asset; used only if split and config match"
    )
