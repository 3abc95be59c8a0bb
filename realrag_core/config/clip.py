"""The base CLIP and the judge: the demo architecture and training, or a pretrained open_clip model."""

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


# --------------------------------------------------------------------------- the demo CLIP


class ClipArchitecture(StrictModel):
    """An open_clip model config (see open_clip's model_configs/*.json)."""

    embed_dim: int = Field(128, ge=8)
    image_size: int = Field(32, ge=8)
    vision_layers: int | tuple[int, int, int, int] = Field(
        4,
        description="a number: a ViT of that many blocks; four numbers: open_clip's ModifiedResNet (the CLIP "
        "ResNets), that many bottleneck blocks per stage, stem width vision_width / 2, output 32 x vision_width",
    )
    vision_width: int = Field(128, ge=16)
    patch_size: int = Field(4, ge=1)
    text_layers: int = Field(4, ge=1)
    text_width: int = Field(128, ge=16)
    text_heads: int = Field(4, ge=1)
    context_length: int = Field(16, ge=4, le=77)

    @property
    def resnet(self) -> bool:
        return not isinstance(self.vision_layers, int)

    @model_validator(mode="after")
    def _sizes_fit(self):
        if self.resnet:
            if min(self.vision_layers) < 1:
                raise ValueError(f"every ResNet stage needs a block: vision_layers {list(self.vision_layers)}")
            if self.image_size % 32:
                raise ValueError(f"a ResNet downsamples 32x: image_size {self.image_size} is not a multiple of 32")
        elif self.vision_layers < 1:
            raise ValueError("vision_layers must be >= 1")
        if not self.resnet and self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        if not self.resnet and self.vision_width % 64 and self.vision_width % 32 and self.vision_width % 16:
            raise ValueError(f"vision_width {self.vision_width} must be a multiple of 16 (open_clip head size)")
        return self

    def open_clip_model_cfg(self) -> dict:
        vision = {"image_size": self.image_size, "layers": self.vision_layers, "width": self.vision_width}
        if self.resnet:  # open_clip builds a ModifiedResNet when layers is a list
            vision["layers"] = list(self.vision_layers)
        else:
            vision |= {"head_width": min(64, self.vision_width), "patch_size": self.patch_size}
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision,
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": 49408,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }


class ClipTrainConfig(StrictModel):
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(40, ge=0)
    captions: tuple[str, ...] = Field(
        ("a {concept}", "an emoji of a {concept}", "{concept}"),
        description="caption templates sampled during pre-training",
    )
    augment_scale: tuple[float, float] = Field((0.7, 1.0), description="RandomResizedCrop scale range")
    # Added for issue 16's recipes. Training keys leave these out while they hold their defaults, so weights made
    # before they existed keep their keys (``ClipTrainConfig.key_dump``).
    hflip: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="probability of mirroring a training image (artists draw objects facing either way)",
    )
    fused_optimizer: bool = Field(False, description="torch's fused AdamW kernel (same update rule, other rounding)")
    image_text_weight: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="weight of the image->text term of the symmetric contrastive loss (1: open_clip ClipLoss as is)",
    )
    color_jitter: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0),
        description="brightness, contrast, saturation jitter (open_clip's color_jitter augmentation); hue is never "
        "jittered, since colour names many concepts (a red apple is not a green apple)",
    )
    color_jitter_prob: float = Field(0.0, ge=0.0, le=1.0, description="probability of applying color_jitter")
    average_from: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="average the weights of every step from this fraction of training on (torch's AveragedModel, "
        "uniform weights, as SWA/SWAD do for out-of-domain transfer) and keep the average; None keeps the last step",
    )
    image_pair_weight: float = Field(
        0.0,
        ge=0.0,
        description="0: one image per concept in a batch. Above 0: half as many concepts, two images of each (two "
        "artists' drawings where the concept has more than one, else two augmentations of one), each paired with "
        "the caption, plus this weight times open_clip's ClipLoss between the two images (image-image positives "
        "across artists, as SLIP adds a self-supervised term); the batch holds as many images as before",
    )

    @field_validator("captions")
    @classmethod
    def _templates(cls, v):
        if not v or any("{concept}" not in t for t in v):
            raise ValueError("every caption template must contain {concept}")
        return v

    def open_clip_aug_cfg(self) -> dict:
        """open_clip's ``AugmentationCfg`` for this recipe's training transform."""
        aug = {"scale": tuple(self.augment_scale)}
        if self.color_jitter_prob:
            aug |= {"color_jitter": (*self.color_jitter, 0.0), "color_jitter_prob": self.color_jitter_prob}
        return aug

    def key_dump(self) -> dict:
        """What a training key hashes: every setting, less the later-added ones while at their defaults."""
        later = {
            "hflip",
            "fused_optimizer",
            "image_text_weight",
            "color_jitter",
            "color_jitter_prob",
            "average_from",
            "image_pair_weight",
        }
        dump = self.model_dump(mode="json")
        defaults = type(self)().model_dump(mode="json")  # compared as JSON: a tuple default dumps as a list
        return {k: v for k, v in dump.items() if k not in later or v != defaults[k]}


class DemoClipConfig(StrictModel):
    """The demo's base CLIP: an open_clip model built from ``architecture`` and pre-trained here."""

    kind: Literal["train_demo"] = "train_demo"
    architecture: ClipArchitecture = ClipArchitecture()
    train: ClipTrainConfig = ClipTrainConfig()
    eval_caption: str = Field("a {concept}", description="text query used for zero-shot retrieval")
    shipped_weights: Path | None = Field(
        None,
        description="weights made by this recipe on this data (scripts/train_demo_models.sh), used only when "
        "their stored training key matches; otherwise the asset trains",
    )


class PretrainedClipConfig(StrictModel):
    """A pretrained open_clip model by name and tag, loaded by open_clip's factory through its weight cache."""

    kind: Literal["open_clip_pretrained"]
    cache_folder: ClassVar[str] = "open_clip"  # under model_cache
    model: str = Field(description="open_clip model name, e.g. ViT-B-32, ViT-L-14 (open_clip.list_models())")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. laion2b_s34b_b79k, openai; open_clip.list_pretrained()) or "
        "a checkpoint file; null: random weights",
    )
    cache_dir: Path | None = Field(None, description="open_clip's weight cache folder (null: its default)")
    eval_caption: str = Field("a {concept}", description="text query used for zero-shot retrieval")


class DemoJudgeConfig(StrictModel):
    """The evaluation judge: a separate open_clip model (own seed) trained on every real image and caption except
    the reference style's images of world concepts (its ceiling is measured on those), used only by the metrics
    stage (the way Inception is independent)."""

    kind: Literal["train_demo"] = "train_demo"
    seed: int = 1
    architecture: ClipArchitecture = ClipArchitecture()
    train: ClipTrainConfig = ClipTrainConfig()
    shipped_weights: Path | None = Field(None, description="as for the base CLIP")


ClipConfig = Annotated[
    Union[Annotated[DemoClipConfig, Tag("train_demo")], Annotated[PretrainedClipConfig, Tag("open_clip_pretrained")]],
    Discriminator(kind_or("train_demo")),
]
JudgeConfig = Annotated[
    Union[Annotated[DemoJudgeConfig, Tag("train_demo")], Annotated[PretrainedClipConfig, Tag("open_clip_pretrained")]],
    Discriminator(kind_or("train_demo")),
]
