"""A user's image folder plus a captions file (CSV or JSONL: path, caption[, concept, style])."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from realrag_core.config.base import StrictModel
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import iter_caption_file


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


KIND = SourceKind(
    CaptionFileSourceConfig,
    lambda source, with_errors=False: iter_caption_file(source.image_dir, source.captions, with_errors),
    fingerprint_paths=lambda source: [source.captions, source.image_dir],
    dataset_name=lambda s: f"captions:{s.captions.parent.name}/{s.captions.name}",
)
