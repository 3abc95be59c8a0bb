"""What every source's listing is made of: the record, the captions-file reader, and the checks that turn a
listed path that cannot become a row (a link to nothing, a special file, a folder named like an image, a path
outside the source folder) into a reject with its reason instead of an exception."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from realrag_core.data.captions import MANIFEST_NAME

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


def not_utf8(text: str) -> bool:
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


def file_problem(path: Path, root: Path) -> str | None:
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
        if error is None and any(not_utf8(v) for v in (rel, caption, concept, style)):
            error = "the captions file's row is not valid UTF-8"
            rel, caption, concept, style = (
                v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for v in (rel, caption, concept, style)
            )
            path = image_dir / rel
        elif error is None:  # what the entry is first (a loop of links must not read as "outside"), then where
            error = file_problem(path, root) or (
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


def built_records(image_dir: Path, with_errors: bool = False) -> Iterator[ImageRecord]:
    """The records of a source that ends as a folder plus ``captions.csv`` (a built world or an export)."""
    manifest = image_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} is missing: materialize the image_source asset first")
    return iter_caption_file(image_dir, manifest, with_errors)


def listing_summary(records: Iterable[ImageRecord], rebuilt: bool = False) -> dict:
    """How many images, concepts and styles a listing holds (what ``prepare`` reports)."""
    count, concepts, styles = 0, set(), set()
    for r in records:
        count += 1
        concepts.add(r.concept)
        styles.add(r.style)
    return {"rebuilt": rebuilt, "images": count, "concepts": len(concepts), "styles": sorted(styles)}


def stat_entry(path: Path) -> list:
    """A path's size and modification time for a fingerprint (None when it cannot be read): metadata only."""
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]
