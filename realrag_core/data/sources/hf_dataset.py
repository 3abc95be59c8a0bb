"""A Hugging Face ``datasets`` dataset (by hub id or a local ``save_to_disk`` folder), exported once into PNGs plus a
``captions.csv``; rows that cannot be exported are rejects with their reason. ``datasets`` is imported only here."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar, Iterator, Literal

from pydantic import Field, model_validator

from realrag_core.config.base import StrictModel
from realrag_core.data.captions import MANIFEST_NAME, write_manifest
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import ImageRecord, built_records, held_out, iter_caption_file


class HFDatasetSourceConfig(StrictModel):
    """A Hugging Face ``datasets`` dataset by name (or a local dataset folder), exported once to PNGs plus a
    captions.csv in ``image_dir``; ``datasets`` is imported only when this source is used."""

    kind: Literal["hf_dataset"] = "hf_dataset"
    cache_folder: ClassVar[str] = "huggingface/datasets"  # under model_cache
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


def _records(source: HFDatasetSourceConfig, with_errors: bool = False) -> Iterator[ImageRecord]:
    records = built_records(source.image_dir, with_errors)
    return _with_export_rejects(records, source) if with_errors else records


KIND = SourceKind(
    HFDatasetSourceConfig,
    _records,
    export_hf_dataset,
    dataset_name=lambda s: f"hf:{s.name}" + (f"/{s.config_name}" if s.config_name else ""),
)
