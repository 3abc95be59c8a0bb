"""Image sources: a user's folder with a captions file, class-named sub-folders, and the two built worlds
(the emoji demo and the synthetic smoke world), which both end as a folder plus ``captions.csv``.

A source only *lists* records, lazily; reading and decoding pixels is the embedding stage's job.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .captions import MANIFEST_NAME, write_manifest
from .config import (
    CaptionFileSourceConfig,
    ClassFolderSourceConfig,
    EmojiDemoSourceConfig,
    HFDatasetSourceConfig,
    SyntheticSourceConfig,
)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    caption: str
    concept: str
    style: str
    error: str | None = None  # a listing that cannot become a row (the embedding stage records it as a reject)


class ManifestError(ValueError):
    """A captions file that cannot be read at all (missing required columns)."""


def _caption_rows(captions: Path) -> Iterator[dict]:
    if captions.suffix.lower() == ".jsonl":
        with captions.open(encoding="utf-8", errors="surrogateescape") as fh:
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
        # invalid UTF-8 in one row must not end the listing: its bytes survive as surrogates, and that row is refused
        with captions.open(encoding="utf-8", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "caption"} - set(reader.fieldnames or ())
            if missing:
                raise ManifestError(f"{captions}: missing column(s) {sorted(missing)}")
            yield from reader


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def confined(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks followed) stays inside ``root``: a listing must not read files elsewhere."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # outside, or a symlink loop
        return False


def iter_caption_file(image_dir: Path, captions: Path, with_errors: bool = False) -> Iterator[ImageRecord]:
    """Records of a captions file; paths are relative to ``image_dir``. Concept defaults to the caption.

    With ``with_errors`` the listing also yields what cannot become a row, each with its ``error``: unreadable
    lines, text that is not UTF-8, paths leading outside ``image_dir`` (``..``, absolute, symlinks), and image
    files in the folder that the captions file does not list."""
    listed: set[str] = set()
    root = image_dir.resolve()
    for row in _caption_rows(captions):
        rel = str(row.get("path") or "").strip()
        caption = str(row.get("caption") or "").strip()
        concept = str(row.get("concept") or "").strip() or caption
        style = str(row.get("style") or "").strip() or "default"
        error = row.get("_error")
        path = image_dir / rel
        if error is None and any(_not_utf8(v) for v in (rel, caption, concept, style)):
            error = "the captions file's row is not valid UTF-8"
            rel, caption, concept, style = (
                v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for v in (rel, caption, concept, style)
            )
            path = image_dir / rel
        elif error is None and not confined(path, root):
            error = "path leads outside the source folder"
        if with_errors:  # listed, good or not: no second reject as an unlisted file
            listed.add(os.path.normpath(path.absolute()))
        if error is None:
            yield ImageRecord(path, caption, concept, style)
        elif with_errors:
            yield ImageRecord(path, caption, concept, style, error)
    if with_errors:
        for dirpath, dirnames, filenames in os.walk(image_dir):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.normpath(os.path.join(os.path.abspath(dirpath), name))
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and full not in listed:
                    yield ImageRecord(Path(full), "", "", "", "image file not listed in the captions file")


def held_out(name: str, fraction: float) -> bool:
    """A stable per-file draw: the same file is held out whatever else the folder holds."""
    return fraction > 0 and int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def iter_class_folders(
    root: Path,
    template: str,
    style: str,
    held_out_fraction: float = 0.0,
    held_out_style: str = "held_out",
    with_errors: bool = False,
) -> Iterator[ImageRecord]:
    resolved = root.resolve()
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        concept = class_dir.name.replace("_", " ")
        caption = template.format(concept=concept)
        with os.scandir(class_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    chosen = held_out_style if held_out(f"{class_dir.name}/{entry.name}", held_out_fraction) else style
                    error = (
                        "file name is not valid UTF-8"
                        if _not_utf8(entry.name)
                        else "path leads outside the source folder"
                        if entry.is_symlink() and not confined(Path(entry.path), resolved)
                        else None
                    )
                    if error:
                        if with_errors:
                            yield ImageRecord(Path(entry.path), caption, concept, chosen, error)
                        continue
                    yield ImageRecord(Path(entry.path), caption, concept, chosen)


def iter_records(source, with_errors: bool = False) -> Iterator[ImageRecord]:
    """Every record a configured source lists, in a stable order. With ``with_errors`` also the listings that
    cannot become rows, each with its ``error`` (the embedding stage records them as rejects)."""
    if isinstance(source, (EmojiDemoSourceConfig, SyntheticSourceConfig, HFDatasetSourceConfig)):
        manifest = source.image_dir / MANIFEST_NAME
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: materialize the image_source asset first")
        return iter_caption_file(source.image_dir, manifest, with_errors)
    if isinstance(source, CaptionFileSourceConfig):
        return iter_caption_file(source.image_dir, source.captions, with_errors)
    if isinstance(source, ClassFolderSourceConfig):
        return iter_class_folders(
            source.root,
            source.caption_template,
            source.style,
            source.held_out_fraction,
            source.held_out_style,
            with_errors,
        )
    raise TypeError(f"unknown source config {type(source).__name__}")


def load_hf_dataset(source: HFDatasetSourceConfig):
    try:
        import datasets
    except ImportError as err:
        raise ImportError("the hf_dataset source needs the datasets package: pip install 'realrag[hf]'") from err
    token = os.environ.get(source.token_env) if source.token_env else None
    local = Path(source.name)
    if (local / "dataset_info.json").is_file() and (local / "state.json").is_file():  # save_to_disk layout
        data = datasets.load_from_disk(str(local))
        return data[source.split] if isinstance(data, datasets.DatasetDict) else data
    return datasets.load_dataset(
        source.name,
        source.config_name,
        split=source.split,
        revision=source.revision,
        cache_dir=str(source.cache_dir) if source.cache_dir else None,
        token=token,
    )


def export_hf_dataset(source: HFDatasetSourceConfig, progress: bool = True) -> dict:
    """Write each row's image as PNG and one captions.csv; reruns with the same settings reuse the export.
    Rows whose image cannot be decoded are skipped and counted (the rest of the export goes on)."""
    from PIL import Image
    from tqdm.auto import tqdm

    key = hashlib.sha256(
        json.dumps(
            source.model_dump(mode="json", exclude={"image_dir", "cache_dir", "token_env"}), sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    out, stamp = source.image_dir, source.image_dir / ".export.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key and (out / MANIFEST_NAME).is_file():
        rows = list(iter_caption_file(out, out / MANIFEST_NAME))
        return {
            "rebuilt": False,
            "images": len(rows),
            "concepts": len({r.concept for r in rows}),
            "styles": sorted({r.style for r in rows}),
        }
    data = load_hf_dataset(source)
    missing = {c for c in (source.image_column, source.label_column, source.caption_column) if c} - set(
        data.column_names
    )
    if missing:
        raise ValueError(f"dataset {source.name} has no column(s) {sorted(missing)}; it has {data.column_names}")
    feature = data.features.get(source.label_column) if source.label_column else None
    names = getattr(feature, "names", None)
    if source.max_images:
        data = data.select(range(min(source.max_images, len(data))))
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], 0
    for i, row in enumerate(tqdm(data, desc=f"export {source.name}", disable=not progress)):
        image = row[source.image_column]
        try:
            image = image if isinstance(image, Image.Image) else Image.open(image["path"])
            image = image.convert("RGB")
        except Exception:  # noqa: BLE001 - one bad row must not end the export
            skipped += 1
            continue
        concept = (
            str(names[row[source.label_column]] if names else row[source.label_column]) if source.label_column else ""
        )
        caption = (
            str(row[source.caption_column])
            if source.caption_column
            else source.caption_template.format(concept=concept)
        )
        concept = concept or caption
        name = f"{i:07d}.png"
        image.save(out / name)
        style = (
            source.held_out_style
            if held_out(f"{source.name}/{source.split}/{i}", source.held_out_fraction)
            else source.style
        )
        rows.append({"path": name, "caption": caption, "concept": concept, "style": style})
    write_manifest(out / MANIFEST_NAME, rows)
    stamp.write_text(json.dumps({"key": key, "rows": len(rows), "skipped": skipped}))
    return {
        "rebuilt": True,
        "images": len(rows),
        "skipped": skipped,
        "concepts": len({r["concept"] for r in rows}),
        "styles": sorted({r["style"] for r in rows}),
    }


def prepare_source(source, progress: bool = True) -> dict:
    """Make a source ready to list: build the demo or synthetic world, or check a user's folder."""
    if isinstance(source, EmojiDemoSourceConfig):
        from .demo_world import build_demo_world

        return build_demo_world(source.npm_cache, source.image_dir, source.image_size, source.categories)
    if isinstance(source, SyntheticSourceConfig):
        from .synthetic_world import build_synthetic_world

        return build_synthetic_world(source)
    if isinstance(source, HFDatasetSourceConfig):
        return export_hf_dataset(source, progress)
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
