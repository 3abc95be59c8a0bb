"""The offline demo world as a source: object emoji by several artists from pinned npm packages, rendered into a
folder plus ``captions.csv`` (``realrag_core.data.demo_world``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from typing import Literal

from realrag_core.config.base import StrictModel
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import built_records


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


def _prepare(source: EmojiDemoSourceConfig, progress: bool = True) -> dict:
    from realrag_core.data.demo_world import build_demo_world

    return build_demo_world(source.npm_cache, source.image_dir, source.image_size, source.categories)


KIND = SourceKind(
    EmojiDemoSourceConfig, lambda source, with_errors=False: built_records(source.image_dir, with_errors), _prepare
)
