"""Image sources: a user's folder with a captions file, class-named sub-folders, and the two built worlds
(the emoji demo and the synthetic smoke world), which both end as a folder plus ``captions.csv``.

A source only *lists* records, lazily; reading and decoding pixels is the embedding stage's job.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from realrag_core.data.captions import MANIFEST_NAME, write_manifest
from realrag_core.config.sources import (
    CaptionFileSourceConfig,
    ClassFolderSourceConfig,
    EmojiDemoSourceConfig,
    HFDatasetSourceConfig,
    SyntheticSourceConfig,
)

# File names listed as pictures; the content decides the format, and one Pillow cannot read (HEIC from a phone,
# JPEG XL, SVG) becomes a reject that says so rather than a file nobody hears of.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    | {".pgm", ".ppm", ".pbm", ".pnm", ".tga", ".jp2", ".avif", ".qoi", ".heic", ".heif", ".jxl", ".svg"}
)


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


_FILE_TYPES = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def classify_entry(path: Path, root: Path) -> tuple[str | None, str | None]:
    """``("file", None)``, ``("dir", None)`` or ``(None, reason)`` for one listed path, without opening it:
    a listing must never block on a named pipe, follow a link out of ``root`` (resolved) or raise."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, "no such file"
    except PermissionError:
        return None, "permission denied"
    except OSError as err:  # a parent that is a file (ENOTDIR), a name too long, ...
        return None, f"cannot be listed: {err.strerror or err}"
    if stat.S_ISLNK(info.st_mode):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None, "link that cannot be resolved: its target does not exist"
        except PermissionError:
            return None, "permission denied"
        except OSError as err:
            detail = "a loop of links" if err.errno == errno.ELOOP else (err.strerror or str(err))
            return None, f"link that cannot be resolved: {detail}"
        if not confined(path, root):
            return None, "path leads outside the source folder"
    if stat.S_ISDIR(info.st_mode):
        return "dir", None
    if not stat.S_ISREG(info.st_mode):
        return None, f"not a regular file: {_FILE_TYPES.get(stat.S_IFMT(info.st_mode), 'of an unknown type')}"
    return "file", None


def _file_problem(path: Path, root: Path) -> str | None:
    """Why a path listed as an image file cannot be read as one, or None."""
    kind, problem = classify_entry(path, root)
    if kind == "dir":
        return "a folder named like an image" if path.suffix.lower() in IMAGE_SUFFIXES else "a folder, not a file"
    return problem


def iter_caption_file(image_dir: Path, captions: Path, with_errors: bool = False) -> Iterator[ImageRecord]:
    """Records of a captions file; paths are relative to ``image_dir``. Concept defaults to the caption.

    With ``with_errors`` the listing also yields what cannot become a row, each with its ``error``: unreadable
    lines, text that is not UTF-8, paths leading outside ``image_dir`` (``..``, absolute, symlinks), listed
    paths that are not a readable regular file (missing, a folder, a named pipe, a link to nothing or a loop,
    permission denied), and image files in the folder that the captions file does not list."""
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
        elif error is None:  # what the entry is first (a loop of links must not read as "outside"), then where
            error = _file_problem(path, root) or (
                None if confined(path, root) else "path leads outside the source folder"
            )
        if with_errors:  # listed, good or not: no second reject as an unlisted file
            listed.add(os.path.normpath(path.absolute()))
        if error is None:
            yield ImageRecord(path, caption, concept, style)
        elif with_errors:
            yield ImageRecord(path, caption, concept, style, error)
    if with_errors:
        unlistable: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(image_dir, onerror=unlistable.append):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.normpath(os.path.join(os.path.abspath(dirpath), name))
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and full not in listed:
                    yield ImageRecord(Path(full), "", "", "", "image file not listed in the captions file")
        for err in unlistable:  # a sub-folder that cannot be read: whatever it holds is unaccounted for
            reason = "permission denied" if isinstance(err, PermissionError) else err.strerror or str(err)
            yield ImageRecord(Path(err.filename or image_dir), "", "", "", f"folder cannot be listed: {reason}")


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
    """``root/<class name>/<image>``. With ``with_errors`` every other entry is yielded too, with its ``error``:
    files beside the class folders, folders inside them (one level deep), files that are not images by name,
    links that cannot be resolved or lead outside ``root``, special files, names that are not UTF-8, and folders
    that cannot be listed. Nothing in the folder makes the listing raise."""
    resolved = root.resolve()

    def reject(path, error, concept="", caption=""):
        return ImageRecord(Path(path), caption, concept, style, error)

    with os.scandir(root) as it:  # an unreadable root is an error before any work
        tops = sorted(it, key=lambda e: e.name)
    for top in tops:
        kind, problem = classify_entry(Path(top.path), resolved)
        if kind != "dir":
            if with_errors:
                image = Path(top.name).suffix.lower() in IMAGE_SUFFIXES
                yield reject(
                    top.path, problem or ("an image outside any class folder" if image else "not a class folder")
                )
            continue
        if _not_utf8(top.name):
            if with_errors:
                yield reject(top.path, "class folder name is not valid UTF-8")
            continue
        concept = top.name.replace("_", " ")
        caption = template.format(concept=concept)
        try:
            with os.scandir(top.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            if with_errors:
                reason = "permission denied" if isinstance(err, PermissionError) else err.strerror or str(err)
                yield reject(top.path, f"class folder cannot be listed: {reason}", concept, caption)
            continue
        for entry in entries:
            path = Path(entry.path)
            image = path.suffix.lower() in IMAGE_SUFFIXES
            kind, problem = classify_entry(path, resolved)
            chosen = held_out_style if held_out(f"{top.name}/{entry.name}", held_out_fraction) else style
            if kind == "file" and image and not _not_utf8(entry.name):
                yield ImageRecord(path, caption, concept, chosen)
                continue
            if not with_errors:
                continue
            if kind == "dir":
                problem = "a folder named like an image" if image else "a folder inside a class folder"
            elif kind == "file":
                problem = "file name is not valid UTF-8" if image else f"not an image file: suffix {path.suffix!r}"
            yield ImageRecord(path, caption, concept, chosen, problem)


def iter_records(source, with_errors: bool = False) -> Iterator[ImageRecord]:
    """Every record a configured source lists, in a stable order. With ``with_errors`` also the listings that
    cannot become rows, each with its ``error`` (the embedding stage records them as rejects)."""
    if isinstance(source, (EmojiDemoSourceConfig, SyntheticSourceConfig, HFDatasetSourceConfig)):
        manifest = source.image_dir / MANIFEST_NAME
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: materialize the image_source asset first")
        records = iter_caption_file(source.image_dir, manifest, with_errors)
        if with_errors and isinstance(source, HFDatasetSourceConfig):
            return _with_export_rejects(records, source)
        return records
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


EXPORT_STAMP = ".export.json"


def _with_export_rejects(records: Iterator[ImageRecord], source: HFDatasetSourceConfig) -> Iterator[ImageRecord]:
    """The export's records, then the dataset rows it could not export, each as a reject with its reason."""
    yield from records
    stamp = source.image_dir / EXPORT_STAMP
    for row in json.loads(stamp.read_text()).get("rejects", []) if stamp.is_file() else []:
        yield ImageRecord(Path(f"<{source.name} {source.split} row {row['row']}>"), "", "", "", row["reason"])


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


def _dataset_image(value):
    """(8-bit RGB image, None) or (None, reason) for a dataset's image cell: undecoded bytes or a path (decoded as
    stage 1 decodes a file: limits, 16-bit and float by their range, EXIF orientation, transparency on white), or
    an already decoded PIL image."""
    from PIL import Image

    from realrag_core.data.image_io import SUPPORTED_MODES, decode_image, to_rgb

    if isinstance(value, Image.Image):
        if value.mode not in SUPPORTED_MODES:
            return None, f"unsupported mode: {value.mode}"
        return to_rgb(value), None
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        return decode_image(value["bytes"] if value.get("bytes") else Path(value["path"]).read_bytes())
    return None, f"no image in the cell ({type(value).__name__})"


def export_hf_dataset(source: HFDatasetSourceConfig, progress: bool = True) -> dict:
    """Write each row's image as PNG and one captions.csv; reruns with the same settings reuse the export.
    Rows whose image cannot be decoded are skipped and counted (the rest of the export goes on)."""
    from tqdm.auto import tqdm

    settings = source.model_dump(mode="json", exclude={"image_dir", "cache_dir", "token_env"})
    # version 2: rows decoded as stage 1 decodes files (16-bit scaled, not clipped; damaged rows are rejects)
    key = hashlib.sha256(json.dumps({**settings, "export_version": 2}, sort_keys=True).encode()).hexdigest()[:16]
    out, stamp = source.image_dir, source.image_dir / EXPORT_STAMP
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
    if type(data.features[source.image_column]).__name__ == "Image":
        # decoded here, not by the dataset's iterator: one damaged row would end the iteration, the export with it
        data = data.cast_column(source.image_column, type(data.features[source.image_column])(decode=False))
    out.mkdir(parents=True, exist_ok=True)
    rows, rejects = [], []
    for i, row in enumerate(tqdm(data, desc=f"export {source.name}", disable=not progress)):
        try:
            image, reason = _dataset_image(row[source.image_column])
        except Exception as err:  # noqa: BLE001 - one bad row must not end the export: a reject with its reason
            image, reason = None, f"{type(err).__name__}: {err}"
        if image is None:
            rejects.append({"row": i, "reason": f"dataset row could not be exported: {reason}"})
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
    stamp.write_text(json.dumps({"key": key, "rows": len(rows), "skipped": len(rejects), "rejects": rejects}))
    return {
        "rebuilt": True,
        "images": len(rows),
        "skipped": len(rejects),
        "concepts": len({r["concept"] for r in rows}),
        "styles": sorted({r["style"] for r in rows}),
    }


def prepare_source(source, progress: bool = True) -> dict:
    """Make a source ready to list: build the demo or synthetic world, or check a user's folder."""
    if isinstance(source, EmojiDemoSourceConfig):
        from realrag_core.data.demo_world import build_demo_world

        return build_demo_world(source.npm_cache, source.image_dir, source.image_size, source.categories)
    if isinstance(source, SyntheticSourceConfig):
        from realrag_core.data.synthetic_world import build_synthetic_world

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
