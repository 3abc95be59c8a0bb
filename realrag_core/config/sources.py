"""Image sources, one per ``kind``: the emoji demo world, the synthetic world, a captions file, class folders and a
Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from realrag_core.config.base import StrictModel


# --------------------------------------------------------------------------- image sources


class EmojiDemoSourceConfig(StrictModel):
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


class SyntheticSourceConfig(StrictModel):
    """A tiny procedurally drawn world (coloured shapes in several drawing styles) for smoke runs."""

    kind: Literal["synthetic"] = "synthetic"
    image_dir: Path
    num_concepts: int = Field(12, ge=4, le=64)
    styles: tuple[str, ...] = ("outline", "filled", "shadow", "striped", "dotted")
    image_size: int = Field(32, ge=16, le=256)


class CaptionFileSourceConfig(StrictModel):
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


class ClassFolderSourceConfig(StrictModel):
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


class HFDatasetSourceConfig(StrictModel):
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
