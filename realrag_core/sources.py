"""Image sources: a user's folder with a captions file, class-named sub-folders, and the two built worlds
(the emoji demo and the synthetic smoke world), which both end as a folder plus ``captions.csv``.

A source only *lists* records, lazily; reading and decoding pixels is the embedding stage's job.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import (
    CaptionFileSourceConfig,
    ClassFolderSourceConfig,
    EmojiDemoSourceConfig,
    SyntheticSourceConfig,
)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MANIFEST_NAME = "captions.csv"
MANIFEST_COLUMNS = ("path", "caption", "concept", "style")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    caption: str
    concept: str
    style: str


class ManifestError(ValueError):
    """A captions file that cannot be read at all (missing required columns)."""


def _caption_rows(captions: Path) -> Iterator[dict]:
    if captions.suffix.lower() == ".jsonl":
        with captions.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    yield {"path": f"<{captions.name} line {lineno}>", "caption": "", "_error": "invalid JSON line"}
                    continue
                yield row if isinstance(row, dict) else {"path": f"<line {lineno}>", "_error": "not an object"}
    else:
        with captions.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "caption"} - set(reader.fieldnames or ())
            if missing:
                raise ManifestError(f"{captions}: missing column(s) {sorted(missing)}")
            yield from reader


def iter_caption_file(image_dir: Path, captions: Path) -> Iterator[ImageRecord]:
    """Records of a captions file; paths are relative to ``image_dir``. Concept defaults to the caption."""
    for row in _caption_rows(captions):
        rel = str(row.get("path") or "").strip()
        caption = str(row.get("caption") or "").strip()
        concept = str(row.get("concept") or "").strip() or caption
        style = str(row.get("style") or "").strip() or "default"
        yield ImageRecord(image_dir / rel, caption, concept, style)


def iter_class_folders(root: Path, template: str, style: str) -> Iterator[ImageRecord]:
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        concept = class_dir.name.replace("_", " ")
        caption = template.format(concept=concept)
        with os.scandir(class_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    yield ImageRecord(Path(entry.path), caption, concept, style)


def iter_records(source) -> Iterator[ImageRecord]:
    """Every record a configured source lists, in a stable order."""
    if isinstance(source, (EmojiDemoSourceConfig, SyntheticSourceConfig)):
        manifest = source.image_dir / MANIFEST_NAME
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: materialize the image_source asset first")
        return iter_caption_file(source.image_dir, manifest)
    if isinstance(source, CaptionFileSourceConfig):
        return iter_caption_file(source.image_dir, source.captions)
    if isinstance(source, ClassFolderSourceConfig):
        return iter_class_folders(source.root, source.caption_template, source.style)
    raise TypeError(f"unknown source config {type(source).__name__}")


def write_manifest(path: Path, rows: list[dict]) -> None:
    """Write a captions.csv atomically (a crash leaves the old manifest, never half a file)."""
    columns = list(MANIFEST_COLUMNS) + sorted({k for r in rows for k in r} - set(MANIFEST_COLUMNS))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def prepare_source(source, progress: bool = True) -> dict:
    """Make a source ready to list: build the demo or synthetic world, or check a user's folder."""
    if isinstance(source, EmojiDemoSourceConfig):
        from .demo_world import build_demo_world

        return build_demo_world(source.npm_cache, source.image_dir, source.image_size, source.categories)
    if isinstance(source, SyntheticSourceConfig):
        from .synthetic_world import build_synthetic_world

        return build_synthetic_world(source)
    records = iter_records(source)
    count, concepts, styles = 0, set(), set()
    for r in records:
        count += 1
        concepts.add(r.concept)
        styles.add(r.style)
    if count == 0:
        raise ValueError(f"the {source.kind} source lists no images")
    return {"rebuilt": False, "images": count, "concepts": len(concepts), "styles": sorted(styles)}


def sample_for_preview(source, per_style: int = 6, max_styles: int = 6):
    """The same few concepts in each style (rows = styles), for an image grid. Returns images, labels, columns."""
    from PIL import Image

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
            try:
                images.append(Image.open(path).convert("RGB"))
                labels.append(f"{style}: {concept}")
            except OSError:
                continue
    return images, labels, max(1, len(concepts))
