"""The source kinds, collected: the config tree's ``source`` union is built from ``KINDS``, and every use of a
source (list, prepare, fingerprint, preview) goes through the kind its config names. Nothing outside this
package branches on a source's kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Iterator, Union

from pydantic import Field

from realrag_core.data.sources import caption_file, class_folders, emoji_demo, hf_dataset, synthetic
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import ImageRecord

KINDS: dict[str, SourceKind] = {
    m.KIND.name: m.KIND for m in (emoji_demo, synthetic, caption_file, class_folders, hf_dataset)
}

SourceConfig = Annotated[Union[tuple(k.config for k in KINDS.values())], Field(discriminator="kind")]


def kind_of(source) -> SourceKind:
    try:
        return KINDS[source.kind]
    except KeyError:
        raise TypeError(f"unknown source config {type(source).__name__}") from None


def iter_records(source, with_errors: bool = False) -> Iterator[ImageRecord]:
    """Every record a configured source lists, in a stable order. With ``with_errors`` also the listings that
    cannot become rows, each with its ``error`` (the embedding stage records them as rejects)."""
    return kind_of(source).records(source, with_errors)


def prepare_source(source, progress: bool = True) -> dict:
    """Make a source ready to list: build the demo or synthetic world, export a dataset, or check a user's folder."""
    return kind_of(source).prepare_source(source, progress)


def source_fingerprint(source) -> dict:
    """``{"digest": ..., "entries": n}``: changes whenever images are listed, added or removed. Only metadata is
    read (a few ``stat`` calls), so a sensor tick costs the same on a million images as on a hundred; the embedding
    run it triggers finds out exactly which images are new (by content hash)."""
    return kind_of(source).fingerprint(source)


def dataset_name(source) -> str:
    """What a comparison table calls the data a run used (a dataset id, a folder's name, or the kind)."""
    name = kind_of(source).dataset_name
    return name(source) if name is not None else source.kind


def check_world(source, world) -> None:
    """Refuse a world config the source cannot serve (e.g. style roles the synthetic world does not draw)."""
    check = kind_of(source).check_world
    if check is not None:
        check(source, world)


def sample_for_preview(source, per_style: int = 6, max_styles: int = 6):
    """The same few concepts in each style (rows = styles), for an image grid. Returns images, labels, columns."""
    from realrag_core.data.image_io import decode_image

    by_style: dict[str, dict[str, Path]] = {}
    for r in iter_records(source):
        by_style.setdefault(r.style, {}).setdefault(r.concept, r.path)
    styles = sorted(by_style)[:max_styles]
    common = sorted(set.intersection(*(set(by_style[s]) for s in styles))) if styles else []
    concepts = (common or sorted(by_style[styles[0]]) if styles else [])[:per_style]
    images, labels = [], []
    for style in styles:
        for concept in concepts:
            path = by_style[style].get(concept)
            if path is None:
                continue
            try:  # decoded as stage 1 decodes (limits, 16-bit, transparency); a bad file is left out of the grid
                image, reason = decode_image(path.read_bytes())
            except OSError:
                continue
            if image is not None:
                images.append(image)
                labels.append(f"{style}: {concept}")
    return images, labels, max(1, len(concepts))
