"""One pydantic config tree for the whole pipeline, loaded from YAML.

The config path comes from ``REALRAG_CONFIG`` (default ``configs/demo.yaml`` in the project root).
Relative paths inside a config file are resolved against the folder that holds the file, so a profile
works from any working directory (the Dagster UI, the CLI, tests).

Every invalid config fails in :func:`load_config`, before any work, with one :class:`ConfigError` whose
message names the field and the reason.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"
CONFIG_ENV_VAR = "REALRAG_CONFIG"


class ConfigError(ValueError):
    """An invalid configuration: the message names the file, the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- image sources


class EmojiDemoSourceConfig(_Strict):
    """The offline demo world: object emoji by several artists, from pinned npm packages."""

    kind: Literal["emoji_demo"] = "emoji_demo"
    npm_cache: Path = Field(description="folder holding the `npm pack` tarballs (fetched when missing)")
    image_dir: Path = Field(description="where the rendered images and captions.csv are written")
    image_size: int = Field(64, ge=16, le=512, description="rendered size in pixels, on white")
    categories: tuple[str, ...] = (
        "Animals & Nature",
        "Food & Drink",
        "Travel & Places",
        "Objects",
        "Activities",
    )


class SyntheticSourceConfig(_Strict):
    """A tiny procedurally drawn world (coloured shapes in several drawing styles) for smoke runs."""

    kind: Literal["synthetic"] = "synthetic"
    image_dir: Path
    num_concepts: int = Field(12, ge=4, le=64)
    styles: tuple[str, ...] = ("outline", "filled", "shadow", "striped", "dotted")
    image_size: int = Field(32, ge=16, le=256)


class CaptionFileSourceConfig(_Strict):
    """An image folder plus a captions file (CSV or JSONL) with columns path, caption[, concept, style]."""

    kind: Literal["caption_file"] = "caption_file"
    image_dir: Path
    captions: Path

    @model_validator(mode="after")
    def _paths_exist(self):
        if not self.image_dir.is_dir():
            raise ValueError(f"image_dir {self.image_dir} is not a folder")
        if not self.captions.is_file():
            raise ValueError(f"captions file {self.captions} does not exist")
        if self.captions.suffix.lower() not in {".csv", ".jsonl"}:
            raise ValueError(f"captions file {self.captions} must be .csv or .jsonl")
        return self


class ClassFolderSourceConfig(_Strict):
    """Class-named sub-folders (Stanford-Cars style): ``root/<class name>/*.jpg``."""

    kind: Literal["class_folders"] = "class_folders"
    root: Path
    caption_template: str = "a photo of a {concept}"
    style: str = "photo"
    held_out_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of each class's images (chosen by a hash of the file name, so adding "
        "images never moves old ones) given the style `held_out_style` instead: name it world.styles.reference "
        "to keep an FID reference set out of the database",
    )
    held_out_style: str = "held_out"

    @field_validator("caption_template")
    @classmethod
    def _template_has_concept(cls, v: str) -> str:
        if "{concept}" not in v:
            raise ValueError("caption_template must contain {concept}")
        return v

    @model_validator(mode="after")
    def _root_exists(self):
        if self.held_out_fraction and self.held_out_style == self.style:
            raise ValueError("held_out_style must differ from style")
        if not self.root.is_dir():
            raise ValueError(f"root {self.root} is not a folder")
        return self


class HFDatasetSourceConfig(_Strict):
    """A Hugging Face ``datasets`` dataset by name (or a local dataset folder), exported once to PNGs plus a
    captions.csv in ``image_dir``; ``datasets`` is imported only when this source is used."""

    kind: Literal["hf_dataset"] = "hf_dataset"
    name: str = Field(description="dataset id on the hub (e.g. tanganke/stanford_cars) or a local folder")
    config_name: str | None = None
    split: str = "train"
    revision: str | None = Field(None, description="pin a commit of the dataset repository")
    cache_dir: Path | None = Field(None, description="the datasets cache folder (null: HF_HOME's)")
    token_env: str | None = Field("HF_TOKEN", description="environment variable holding a token for gated datasets")
    image_column: str = "image"
    label_column: str | None = Field("label", description="class column (ClassLabel names become concepts)")
    caption_column: str | None = Field(None, description="a text column to use as caption instead of the template")
    caption_template: str = "a photo of a {concept}"
    image_dir: Path = Field(description="where the exported PNGs and captions.csv are written")
    max_images: int | None = Field(None, ge=1, description="export only the first N rows")
    style: str = "photo"
    held_out_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="as for class_folders")
    held_out_style: str = "held_out"

    @model_validator(mode="after")
    def _needs_a_concept(self):
        if not self.label_column and not self.caption_column:
            raise ValueError("set label_column or caption_column: every image needs a concept")
        return self


SourceConfig = Annotated[
    Union[
        EmojiDemoSourceConfig,
        SyntheticSourceConfig,
        CaptionFileSourceConfig,
        ClassFolderSourceConfig,
        HFDatasetSourceConfig,
    ],
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- world: splits and style roles


class StyleRoles(_Strict):
    """Which artist styles play which role. Independence is enforced per artist, not per style."""

    reference: str | None = Field(
        None, description="held out of the database and of every model except the evaluation judge"
    )
    database: tuple[str, ...] = Field(description="styles whose images form the retrieval database")
    clip_pretrain: tuple[str, ...] = Field(
        description="styles the demo CLIP is pre-trained on (never a database or reference artist)"
    )
    artists: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="styles drawn by one artist (near-duplicates); a style not listed is its own artist",
    )
    outside_world: tuple[str, ...] = Field(
        (),
        description="styles whose images of concepts *outside* the world (and outside the selection concepts) "
        "the demo CLIP also pre-trains on: the database and reference artists may be named here, the way a real "
        "CLIP has seen the photo domain but not these objects' photos. Never an image of a world concept",
    )

    def world_roles(self) -> dict:
        """The roles that decide the world (database and reference, with their artists): what the world hash
        records. Pre-training styles are not among them, so adding an artist never redraws the world."""
        styles = set(self.database) | ({self.reference} - {None})
        return {
            "reference": self.reference,
            "database": list(self.database),
            "artists": {s: self.artist_of(s) for s in sorted(styles)},
        }

    def artist_of(self, style: str) -> str:
        for artist, styles in self.artists.items():
            if style in styles:
                return artist
        return style

    @model_validator(mode="after")
    def _roles_are_independent(self):
        if not self.database:
            raise ValueError("database: at least one style is needed")
        groups = {
            "database": {self.artist_of(s) for s in self.database},
            "clip_pretrain": {self.artist_of(s) for s in self.clip_pretrain},
            "reference": {self.artist_of(self.reference)} if self.reference else set(),
        }
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = groups[a] & groups[b]
                if shared:
                    raise ValueError(
                        f"{a} and {b} share the artist(s) {sorted(shared)}; roles must use independent artists"
                    )
        return self


class WorldConfig(_Strict):
    seed: int = 0
    num_concepts: int | None = Field(
        None, ge=4, description="concepts kept in the world (chosen by seed); null keeps every concept"
    )
    known_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="share of concepts the generator knows")
    num_known: int | None = Field(
        None, ge=1, description="exact count of concepts the generator knows (overrides known_fraction)"
    )
    novel_concepts: tuple[str, ...] | None = Field(
        None,
        description="for a pretrained generator: the concepts it cannot know (e.g. objects released after its "
        "training cut-off); every other concept is known. Overrides known_fraction and num_known",
    )
    require_all_styles: bool = Field(True, description="keep only concepts drawn in the database and reference styles")
    selection_concepts: int = Field(
        0,
        ge=0,
        description="concepts outside the world, drawn in the database and reference styles, chosen by "
        "seed and treated exactly like world concepts by every pre-trained model (none sees their database- or "
        "reference-style images): every choice of a pre-training recipe is measured on them, never on the world",
    )
    styles: StyleRoles

    @model_validator(mode="after")
    def _one_split_rule(self):
        if self.novel_concepts is not None and self.num_known is not None:
            raise ValueError("give either novel_concepts or num_known, not both")
        return self


# --------------------------------------------------------------------------- the demo CLIP


class ClipArchitecture(_Strict):
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


class ClipTrainConfig(_Strict):
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


class DemoClipConfig(_Strict):
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


class PretrainedClipConfig(_Strict):
    """A pretrained open_clip model by name and tag, loaded by open_clip's factory through its weight cache."""

    kind: Literal["open_clip_pretrained"]
    model: str = Field(description="open_clip model name, e.g. ViT-B-32, ViT-L-14 (open_clip.list_models())")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. laion2b_s34b_b79k, openai; open_clip.list_pretrained()) or "
        "a checkpoint file; null: random weights",
    )
    cache_dir: Path | None = Field(None, description="open_clip's weight cache folder (null: its default)")
    eval_caption: str = Field("a {concept}", description="text query used for zero-shot retrieval")


class DemoJudgeConfig(_Strict):
    """The evaluation judge: a separate open_clip model (own seed) trained on every real image and caption except
    the reference style's images of world concepts (its ceiling is measured on those), used only by the metrics
    stage (the way Inception is independent)."""

    kind: Literal["train_demo"] = "train_demo"
    seed: int = 1
    architecture: ClipArchitecture = ClipArchitecture()
    train: ClipTrainConfig = ClipTrainConfig()
    shipped_weights: Path | None = Field(None, description="as for the base CLIP")


def _kind_or(default: str):
    def kind(v) -> str:
        return v.get("kind", default) if isinstance(v, dict) else getattr(v, "kind", default)

    return kind


ClipConfig = Annotated[
    Union[Annotated[DemoClipConfig, Tag("train_demo")], Annotated[PretrainedClipConfig, Tag("open_clip_pretrained")]],
    Discriminator(_kind_or("train_demo")),
]
JudgeConfig = Annotated[
    Union[Annotated[DemoJudgeConfig, Tag("train_demo")], Annotated[PretrainedClipConfig, Tag("open_clip_pretrained")]],
    Discriminator(_kind_or("train_demo")),
]


# --------------------------------------------------------------------------- the demo generator


class DemoUNetConfig(_Strict):
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


class GeneratorMix(_Strict):
    """Training examples by condition; the remainder drops both (classifier-free guidance's null)."""

    text_and_reference: float = Field(0.3, ge=0, le=1)
    reference_only: float = Field(0.4, ge=0, le=1)
    text_only: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _sums(self):
        if self.text_and_reference + self.reference_only + self.text_only > 1 + 1e-9:
            raise ValueError("the shares add up to more than 1")
        return self


class PairedAugment(_Strict):
    """The same random flip and shift applied to a training target and to its reference, so the layout of the
    target can be read only from the reference (a memorised concept cannot supply it)."""

    flip: bool = True
    max_shift: int = Field(2, ge=0, description="pixels in each direction; the border is filled with white")


class GeneratorTrainConfig(_Strict):
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


class SamplingConfig(_Strict):
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


class _GeneratorChecks(_Strict):
    """Sizes of the generator asset's property checks, the same for every generator kind."""

    check_samples_per_concept: int = Field(2, ge=1, description="samples per concept for the property checks")
    check_max_concepts: int | None = Field(
        None, ge=1, description="at most this many concepts per split in the property checks (chosen by seed)"
    )


class TextEncoderRecipe(_Strict):
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


class IPAdapterConfig(_Strict):
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


class DiffusersSamplingConfig(_Strict):
    steps: int = Field(30, ge=1)
    guidance: float = Field(7.5, ge=1.0, description="classifier-free guidance scale")
    image_size: int = Field(512, ge=8)
    batch_size: int = Field(4, ge=1)


class _DiffusersPipelineConfig(_GeneratorChecks):
    """What every pretrained diffusers pipeline shares: where its weights are, their dtype, how to sample."""

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
    Discriminator(_kind_or("demo_diffusion")),
]


class SeenConceptsConfig(_Strict):
    """The paper's protocol: every world concept is a retriever-train concept, and the train, validation and
    evaluation prompts differ by template (three disjoint sets)."""

    train_templates: tuple[str, ...] = ("a {concept}",)
    val_templates: tuple[str, ...] = ("a picture of a {concept}",)
    eval_templates: tuple[str, ...] = ("an image of a {concept}",)
    eval_concepts: Literal["all", "unseen_eval"] = Field(
        "all",
        description="which concepts get evaluation prompts: all world concepts, or only those the unseen_concepts "
        "split evaluates on (unseen_eval: both protocols scored on the same concepts, trained on or not; a quarter "
        "of the generation cost). Training and validation use every concept either way",
    )
    shared_templates: bool = Field(
        False,
        description="allow one template in several splits, as the paper's single class-name prompt: the "
        "splits are then the same texts (distinct prompts, one per split), validation chooses the learning rate on "
        "the training prompts, and evaluation differs from training only by the images it is scored against (the "
        "held-out photos of each class, source.held_out_fraction)",
    )

    @model_validator(mode="after")
    def _disjoint(self):
        sets = {"train": self.train_templates, "val": self.val_templates, "eval": self.eval_templates}
        for name, templates in sets.items():
            if not templates or any("{concept}" not in t for t in templates):
                raise ValueError(f"prompts.seen_concepts.{name}_templates: at least one, each with {{concept}}")
        for a, b in () if self.shared_templates else (("train", "val"), ("train", "eval"), ("val", "eval")):
            shared = set(sets[a]) & set(sets[b])
            if shared:
                raise ValueError(
                    f"prompts.seen_concepts: {sorted(shared)} is both a {a} and a {b} template; the "
                    "evaluation prompts must be ones the retriever never trained or was chosen on "
                    "(shared_templates: true for a single class-name prompt, as the paper's)"
                )
        return self

    def by_split(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train_templates, "val": self.val_templates, "eval": self.eval_templates}


class PromptsConfig(_Strict):
    """Prompts from templates over the world's concepts, and the retriever's train/val/eval concept split."""

    templates: tuple[str, ...] = ("a {concept}",)
    protocols: tuple[Literal["unseen_concepts", "seen_concepts"], ...] = Field(
        ("unseen_concepts",),
        description="evaluation protocols, each with its own retrievers and results: "
        "unseen_concepts (retriever-train/val/eval concepts by split_fractions) and seen_concepts (the paper's: every "
        "concept trains, splits differ by template)",
    )
    seen_concepts: SeenConceptsConfig = SeenConceptsConfig()
    seed: int = 0
    split_fractions: tuple[float, float, float] = Field(
        (0.5, 0.2, 0.3), description="retriever-train, validation, evaluation shares of the concepts"
    )

    @field_validator("templates")
    @classmethod
    def _templates(cls, v):
        if not v or any("{concept}" not in t for t in v):
            raise ValueError("every template must contain {concept}")
        return v

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError("prompts.protocols: one or both of unseen_concepts, seen_concepts, each once")
        return v

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v):
        if any(f < 0 for f in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError("train/val/eval fractions must be >= 0 and add up to 1")
        return v


def _distinct_seeds(v: tuple[int, ...]) -> tuple[int, ...]:
    if not v or len(set(v)) != len(v):
        raise ValueError("give at least one seed, without repeats")
    return v


Seeds = Annotated[tuple[int, ...], AfterValidator(_distinct_seeds)]


class GenerationConfig(_Strict):
    """Stage 2: G(T) without retrieval, for the prompts the retriever learns from."""

    seeds: Seeds = Field((0,), description="one G(T) sample per prompt and seed")
    retriever_splits: tuple[Literal["train", "val", "eval"], ...] = ("train", "val")


class MiningConfig(_Strict):
    """Stage 3: the k real images nearest to each G(T)."""

    k: int = Field(1, ge=1, description="negatives per generated image (the paper uses 1)")
    policy: Literal["exclude_concept", "exclude_positive"] = "exclude_concept"
    incremental: bool = Field(
        True,
        description="re-mine from the previous negatives and the rows added since (identical result, cost "
        "grows with the added rows); images that lost a negative are searched in full",
    )


class AblationConfig(_Strict):
    """Validation-only runs of the reflective retriever's recipe (at its chosen learning rate) with one thing
    changed. Controls replace the reflective negatives by as many random database images, or by the images
    nearest to the prompt's text under the base CLIP (other concepts), so a gain can be credited to reflection
    rather than to more negatives."""

    seeds: Seeds = Field((0,), description="training seeds per variant")
    controls: tuple[Literal["random", "text_nearest"], ...] = ("random", "text_nearest")
    policies: tuple[Literal["exclude_concept", "exclude_positive"], ...] = Field(
        ("exclude_positive",), description="negative policies to mine and train with besides mining.policy"
    )
    k: tuple[int, ...] = Field((3,), description="negatives per generated image besides mining.k")
    trainable: tuple[Literal["text", "text_head", "both"], ...] = Field(
        ("both",), description="trainable parts besides retriever.trainable (validation re-embeds in memory)"
    )
    generators: tuple[Literal["untrained"], ...] = Field(
        ("untrained",),
        description="reflective negatives mined from G(T) of another generator: 'untrained' is the "
        "same architecture with its initial weights (does what the generator learned matter?)",
    )


class RetrieverConfig(_Strict):
    """Stage 4: fine-tuning of the base CLIP; the contrastive baseline uses the same settings."""

    trainable: Literal["text", "text_head", "both"] = Field(
        "text",
        description="text: the text tower only (the table stays valid, image features are cached); "
        "text_head: only the text tower's final norm and projection; both: both towers (each model re-embeds the "
        "database into its own table and searches it)",
    )
    steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-4, gt=0, description="used when lr_grid is empty")
    lr_grid: tuple[float, ...] = Field(
        (),
        description="learning rates tried on validation with the first seed; each retriever (reflective and "
        "contrastive alike) keeps its best, so both get the same tuning budget",
    )
    lr_grid_by_protocol: dict[Literal["unseen_concepts", "seen_concepts"], tuple[float, ...]] = Field(
        {},
        description="another grid for one protocol (its own validation prompts choose from it), e.g. higher rates "
        "under seen_concepts, where every concept trains; both retrievers of that protocol share it",
    )
    seeds: Seeds = Field((0, 1, 2), description="training seeds per retriever (each one is a model)")
    mask_same_concept: bool = True
    image_to_text: bool = False
    validate_every: int | None = Field(
        None,
        ge=1,
        description="early stopping: validate every N steps and keep the best model (never step 0: a "
        "fit is always a real fine-tune); null: keep the last step",
    )
    ablations: AblationConfig = AblationConfig()

    @model_validator(mode="after")
    def _early_stopping(self):
        if self.validate_every is not None and self.trainable == "both":
            raise ValueError(
                "retriever.validate_every: early stopping re-embeds the database at every check when "
                "trainable is 'both'; use it with 'text' or 'text_head'"
            )
        return self

    @field_validator("lr_grid")
    @classmethod
    def _grid(cls, v):
        if any(x <= 0 for x in v):
            raise ValueError("learning rates must be > 0")
        return v

    @field_validator("lr_grid_by_protocol")
    @classmethod
    def _grids(cls, v):
        if any(not grid or any(x <= 0 for x in grid) for grid in v.values()):
            raise ValueError("each protocol's grid: at least one learning rate, each > 0")
        return v

    @property
    def learning_rates(self) -> tuple[float, ...]:
        return self.lr_grid or (self.lr,)

    def learning_rates_for(self, protocol: str) -> tuple[float, ...]:
        """The grid one protocol's retrievers are tuned on."""
        return tuple(self.lr_grid_by_protocol.get(protocol, self.learning_rates))


class RagConfig(_Strict):
    """Stage 5: every arm generates for the evaluation prompts with the same seeds."""

    seeds: Seeds = Field((0, 1, 2, 3), description="samples per prompt and arm")
    seeds_by_protocol: dict[Literal["unseen_concepts", "seen_concepts"], Seeds] = Field(
        {},
        description="samples per prompt and arm for one protocol instead of `seeds`: e.g. one sample under "
        "seen_concepts, whose evaluation prompts cover every concept (power comes from concepts more than samples)",
    )
    retriever_splits: tuple[Literal["train", "val", "eval"], ...] = ("eval",)
    oracle: bool = Field(
        True,
        description="also run the `oracle` arm: a database image of the prompt's own concept, the best any "
        "retriever could hand the generator (how much of the none-to-oracle gap each retriever closes)",
    )
    oracle_seed: int = Field(0, description="which of the concept's database images the oracle hands over")

    def seeds_for(self, protocol: str) -> tuple[int, ...]:
        """The sample seeds of one protocol's evaluation prompts."""
        return tuple(self.seeds_by_protocol.get(protocol, self.seeds))


class InceptionConfig(_Strict):
    """Standard FID/KID: torchmetrics' Inception v3 (torch-fidelity's port of the TF FID network)."""

    weights: Path | None = Field(
        None,
        description="torch-fidelity's weights file (pt_inception-2015-12-05-6726825d.pth); null: torch-fidelity "
        "downloads it once into torch hub's cache (TORCH_HOME)",
    )
    feature: Literal[64, 192, 768, 2048] = Field(2048, description="Inception layer; 2048 is the published protocol")
    batch_size: int = Field(32, ge=1)
    cache_dir: Path | None = Field(
        None, description="torch hub folder the weights are downloaded into (null: TORCH_HOME's)"
    )


class MetricsConfig(_Strict):
    """Stage 6's feature extractors. The judge always scores concept accuracy and fid_judge/kid_judge."""

    inception: InceptionConfig | None = Field(
        None,
        description="also report standard fid/kid (Inception at 299 px, PIL bicubic resize, float64 "
        "statistics); null: off (the demo world has no Inception weights)",
    )
    clip_score: PretrainedClipConfig | None = Field(
        None,
        description="open_clip model for CLIP-T (image-prompt) and CLIP-I (image-real images of the concept); "
        "null: the judge",
    )
    min_fid_samples: int = Field(2048, ge=1, description="the report warns when a cell has fewer generated images")
    near_duplicate_threshold: float | None = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="reference-set images whose cosine similarity (base CLIP) to a database "
        "image reaches this are reported and left out of FID/KID and CLIP-I; null: no check",
    )


# --------------------------------------------------------------------------- stage 1: image embeddings


class IndexConfig(_Strict):
    threshold_rows: int = Field(
        50_000, ge=1, description="build a vector index once the table holds this many rows; exact search below"
    )
    type: Literal["IVF_PQ", "IVF_HNSW_SQ"] = "IVF_HNSW_SQ"
    num_partitions: int | None = Field(None, ge=1, description="null: about sqrt(rows)")
    num_sub_vectors: int | None = Field(None, ge=1, description="IVF_PQ only; null: dim / 8")
    nprobes: int = Field(20, ge=1)
    refine_factor: int = Field(10, ge=1, description="re-rank this many times k candidates exactly")

    @model_validator(mode="after")
    def _pq_needs_training_rows(self):
        if self.type == "IVF_PQ" and self.threshold_rows < 256:
            raise ValueError("IVF_PQ trains 256 centroids per sub-vector: threshold_rows must be >= 256")
        return self


class EmbeddingsConfig(_Strict):
    table_uri: str | None = Field(None, description="LanceDB URI (local path or s3://...); null: <artifacts>/lancedb")
    table_name: str = "image_embeddings"
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    max_image_pixels: int = Field(50_000_000, ge=1, description="larger images are rejected as absurd")
    min_image_side: int = Field(8, ge=1, description="smaller images are rejected")
    max_caption_chars: int = Field(2_000, ge=1, description="longer captions are rejected (CLIP reads 77 tokens)")
    remove_missing: bool = Field(
        True,
        description="delete rows of images no longer in the source (or changed); refused when more than "
        "half the table would go (a missing mount must not empty the database)",
    )
    on_model_mismatch: Literal["error", "recreate"] = Field(
        "error", description="a table written by another model: refuse (error) or drop and rebuild it"
    )
    label_conflicts: Literal["keep_both", "first_wins", "drop_both"] = Field(
        "keep_both",
        description="the same picture (by its bytes) listed under two or more concepts: keep every row (reported "
        "and warned about), keep the concept listed first, or drop them all; either way each is listed in "
        "rejects/image_embeddings_label_conflicts.parquet",
    )
    index: IndexConfig = IndexConfig()


class OperationsConfig(_Strict):
    """Scheduling in Dagster (the sensor and schedule are off until turned on in the UI)."""

    retrain_cron: str = Field("0 3 * * 0", description="cron of the retrain_retrievers schedule (default Sunday 03:00)")
    prompt_shards: int = Field(
        8,
        ge=1,
        le=10000,
        description="partitions of generated_images and rag_images (prompt shards). Read from the "
        "profile in $REALRAG_CONFIG when the code location loads (reload it after a change); it changes how the work "
        "is split, never the result",
    )
    shards_per_run: int | None = Field(
        None,
        ge=1,
        description="a backfill of many shards runs this many per run (the model loads once per run); "
        "null: all selected shards in one run (which the command line's asset materialize --partition-range needs)",
    )

    @field_validator("retrain_cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("a cron expression has five fields, e.g. '0 3 * * 0'")
        return v


# --------------------------------------------------------------------------- root


class HumanEvalConfig(_Strict):
    """The human study's tasks (``realrag_core.human_eval``): how many per cell (protocol x known/novel x arm or
    arm pair), drawn by ``seed``."""

    seed: int = 0
    arms: tuple[str, ...] = Field(
        ("none", "clip", "contrastive", "reflective"), min_length=2, description="arms shown; every pair is compared"
    )
    pairwise_per_cell: int = Field(8, ge=0, description="pairwise tasks per protocol, split and arm pair")
    rating_per_cell: int = Field(8, ge=0, description="7-point rating tasks per protocol, split and arm")
    real_or_generated_per_cell: int = Field(
        8, ge=0, description="generated images per protocol, split and arm in the real-or-generated task (as many real)"
    )
    gold_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="gold tasks: this share of a stratum's pairwise tasks"
    )
    gold_threshold: float = Field(0.75, ge=0.0, le=1.0, description="raters below this gold-task accuracy are reported")
    exclude_failed_raters: bool = Field(True, description="leave raters below gold_threshold out of the numbers")
    bootstrap: int = Field(1000, ge=10, description="bootstrap draws (tasks and raters resampled) for 95% intervals")
    bt_alpha: float = Field(0.01, gt=0.0, description="ridge term of choix's Bradley-Terry fit")
    database_url: str | None = Field(
        None,
        description="where votes go (SQLAlchemy URL, e.g. postgresql://...); null: SQLite in <artifacts>/human_eval",
    )
    allowed_hosts: tuple[str, ...] = Field(
        ("127.0.0.1", "localhost"),
        min_length=1,
        description="Host headers the study page answers (add the proxy's public name when exposed behind one)",
    )

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, v):
        unknown = sorted(set(v) - {"none", "oracle", "clip", "contrastive", "reflective"})
        if unknown or len(set(v)) != len(v):
            raise ValueError(f"arms must be distinct RAG arms (none, oracle, clip, contrastive, reflective): {list(v)}")
        return v


class RealRagConfig(_Strict):
    name: str
    artifacts_root: Path = Field(description="tables, Parquet, images, checkpoints and reports live here")
    artifacts_uri: str | None = Field(
        None,
        description="object storage holding the artifacts (s3://bucket/prefix): artifacts_root becomes this "
        "machine's working copy, brought up to date before each step and sent back after it, and the LanceDB table "
        "lives at <artifacts_uri>/lancedb. Endpoint and credentials from AWS_ENDPOINT_URL, AWS_REGION, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for http://). null: local files only",
    )
    device: Literal["cpu", "cuda", "mps"] = "cpu"
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="CLIP embedding (database, queries, judge, scorer) under torch.autocast in this dtype; "
        "bfloat16 on GPUs. Fine-tuning keeps float32 weights and optimiser",
    )
    model_cache: Path | None = Field(
        None,
        description="one folder for every downloaded weight and dataset (open_clip/, huggingface/, torch/ "
        "inside); a section's own cache_dir wins; null: each library's default cache",
    )
    torch_threads: int | None = Field(None, ge=1, description="null: torch's default")
    source: SourceConfig
    world: WorldConfig
    clip: ClipConfig = DemoClipConfig()
    judge: JudgeConfig = DemoJudgeConfig()
    generator: GeneratorConfig = DemoGeneratorConfig()
    prompts: PromptsConfig = PromptsConfig()
    generation: GenerationConfig = GenerationConfig()
    mining: MiningConfig = MiningConfig()
    retriever: RetrieverConfig = RetrieverConfig()
    rag: RagConfig = RagConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    metrics: MetricsConfig = MetricsConfig()
    human_eval: HumanEvalConfig = HumanEvalConfig()
    operations: OperationsConfig = OperationsConfig()

    @model_validator(mode="after")
    def _synthetic_styles_cover_roles(self):
        if isinstance(self.source, SyntheticSourceConfig):
            roles = self.world.styles
            used = set(roles.database) | set(roles.clip_pretrain) | ({roles.reference} - {None})
            missing = used - set(self.source.styles)
            if missing:
                raise ValueError(f"world.styles names styles the synthetic source does not draw: {sorted(missing)}")
            if self.world.num_concepts and self.world.num_concepts > self.source.num_concepts:
                raise ValueError(
                    f"world.num_concepts {self.world.num_concepts} exceeds source.num_concepts "
                    f"{self.source.num_concepts}"
                )
        return self

    @field_validator("artifacts_uri")
    @classmethod
    def _a_uri(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError(
                "artifacts_uri is a URI with a scheme (s3://bucket/prefix); a local folder is artifacts_root"
            )
        return v.rstrip("/") if v else v

    @property
    def lancedb_uri(self) -> str:
        if self.embeddings.table_uri:
            return self.embeddings.table_uri
        return f"{self.artifacts_uri}/lancedb" if self.artifacts_uri else str(self.artifacts_root / "lancedb")

    def digest(self, *sections: str) -> str:
        """A short stable hash of the named top-level sections (all when none are named)."""
        data = self.model_dump(mode="json")
        if sections:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- loading


_PATH_KEYS = {
    "artifacts_root",
    "npm_cache",
    "image_dir",
    "captions",
    "root",
    "shipped_weights",
    "cache_dir",
    "weights",
    "model_cache",
}
_MODEL_KEYS = {"model", "repo", "pretrained", "image_encoder_folder"}  # a hub id, or a folder when written as ./ or ../
_LOCAL_DIR = "local-dir:"


def _beside(value: str, base: Path) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(node, base: Path):
    """Resolve relative path-valued keys against the config file's folder."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not isinstance(value, str):
                out[key] = _resolve_paths(value, base)
            elif key in _PATH_KEYS or (key == "table_uri" and "://" not in value):  # table_uri: a local LanceDB folder
                out[key] = _beside(value, base)
            elif key in _MODEL_KEYS and value.startswith(("./", "../")):
                out[key] = str((base / value).resolve())
            elif key == "model" and value.startswith(_LOCAL_DIR):  # open_clip's folder schema
                out[key] = _LOCAL_DIR + _beside(value.removeprefix(_LOCAL_DIR), base)
            else:
                out[key] = _resolve_paths(value, base)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, base) for v in node]
    return node


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc or '<root>'}: {msg}")
    return f"invalid config {path}: " + "; ".join(lines)


# union tags pydantic puts into error locations; left out of the field path in messages
_UNION_TAGS = {
    "emoji_demo",
    "synthetic",
    "caption_file",
    "class_folders",
    "train_demo",
    "open_clip_pretrained",
    "demo_diffusion",
    "diffusers_ip_adapter",
    "diffusers_omnigen",
    "external",
}


def config_path_from_env() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG).expanduser().resolve()


# where ``model_cache`` puts each library's downloads, by the kind of section that downloads
_CACHE_FOLDERS = {
    "open_clip_pretrained": "open_clip",
    "diffusers_ip_adapter": "huggingface/hub",
    "diffusers_omnigen": "huggingface/hub",
    "hf_dataset": "huggingface/datasets",
    "inception": "torch/hub",
}


def _fill_model_cache(data: dict) -> dict:
    """``model_cache: <folder>``: one folder for every download (open_clip/, huggingface/, torch/ inside); a
    section's own ``cache_dir`` wins. Cache folders never enter a model's id."""
    root = data.get("model_cache")
    if not root:
        return data
    data = copy.deepcopy(data)
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    sections = [data.get(k) for k in ("source", "clip", "judge", "generator")] + [metrics.get("clip_score")]
    for section in sections:
        if isinstance(section, dict) and section.get("kind") in _CACHE_FOLDERS:
            section.setdefault("cache_dir", str(Path(root) / _CACHE_FOLDERS[section["kind"]]))
    if isinstance(metrics.get("inception"), dict):
        metrics["inception"].setdefault("cache_dir", str(Path(root) / _CACHE_FOLDERS["inception"]))
    return data


def parse_config(data: dict, base_dir: Path, origin: str = "<dict>") -> RealRagConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping")
    try:
        return RealRagConfig.model_validate(_fill_model_cache(_resolve_paths(data, base_dir)))
    except ValidationError as err:
        raise ConfigError(_format_error(Path(origin), err)) from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RealRagConfig:
    """Load and validate a profile. ``path`` defaults to $REALRAG_CONFIG, then configs/demo.yaml.

    ``overrides``: dotted keys set on top of the profile before validation, e.g. ``{"mining.k": 3,
    "retriever.lr_grid": [1e-4]}`` (the Dagster launchpad passes them through the resource)."""
    path = Path(path).expanduser().resolve() if path else config_path_from_env()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (set {CONFIG_ENV_VAR} or pass a path)")
    data = _read_profile(path, ())
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    return parse_config(data, path.parent, str(path))


def apply_overrides(data: dict, overrides: dict, origin: str = "<dict>") -> dict:
    """A copy of ``data`` with each dotted key set (mappings on the way are created when missing)."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"invalid override {dotted!r} for {origin}: {'.'.join(parts[: i + 1])} is not a mapping"
                )
            node = child
        node[parts[-1]] = value
    return data


def _read_profile(path: Path, seen: tuple[Path, ...]) -> dict:
    """A profile's YAML with its relative paths resolved against its own folder; ``extends: <file>`` starts from
    another profile and overrides it key by key (mappings merge, everything else replaces; a mapping whose
    ``kind`` differs from the base's, e.g. another generator, replaces the base's mapping whole)."""
    if path in seen:
        raise ConfigError(f"invalid config {path}: 'extends' loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (f" (extended by {seen[-1]})" if seen else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid config {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}: the top level must be a mapping")
    data = _resolve_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_profile((path.parent / parent).resolve(), (*seen, path)), data)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        mergeable = isinstance(value, dict) and isinstance(out.get(key), dict)
        if mergeable and "kind" in value and value["kind"] != out[key].get("kind"):
            mergeable = False
        out[key] = _merge(out[key], value) if mergeable else value
    return out
