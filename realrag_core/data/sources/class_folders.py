"""Class-named sub-folders (Stanford-Cars style): ``root/<class name>/<image>``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Literal

from pydantic import Field, field_validator, model_validator

from realrag_core.config.base import StrictModel
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import IMAGE_SUFFIXES, ImageRecord, classify_entry, held_out, not_utf8


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


def iter_class_folders(
    root: Path,
    template: str,
    style: str,
    *,
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
        if not_utf8(top.name):
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
            if kind == "file" and image and not not_utf8(entry.name):
                yield ImageRecord(path, caption, concept, chosen)
                continue
            if not with_errors:
                continue
            if kind == "dir":
                problem = "a folder named like an image" if image else "a folder inside a class folder"
            elif kind == "file":
                problem = "file name is not valid UTF-8" if image else f"not an image file: suffix {path.suffix!r}"
            yield ImageRecord(path, caption, concept, chosen, problem)


def _records(source: ClassFolderSourceConfig, with_errors: bool = False) -> Iterator[ImageRecord]:
    return iter_class_folders(
        source.root,
        source.caption_template,
        source.style,
        held_out_fraction=source.held_out_fraction,
        held_out_style=source.held_out_style,
        with_errors=with_errors,
    )


def _fingerprint_paths(source: ClassFolderSourceConfig) -> list[Path]:
    """The root and each class folder: a folder's modification time changes when a file is added, removed or
    renamed in it (one ``stat`` each, nothing decoded)."""
    with os.scandir(source.root) as it:  # what the listing calls a class folder (a link loop is not one)
        folders = sorted(e.path for e in it if classify_entry(Path(e.path), source.root.resolve())[0] == "dir")
    return [source.root] + [Path(f) for f in folders]


KIND = SourceKind(
    ClassFolderSourceConfig,
    _records,
    fingerprint_paths=_fingerprint_paths,
    dataset_name=lambda s: f"folders:{s.root.name}",
)
