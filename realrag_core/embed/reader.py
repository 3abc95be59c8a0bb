"""Reader of the embedding job: streams records from an image source, reads and validates each file in
DataLoader workers, and hands batches of pixels (plus rejects and skips) to the model step.

Kept free of LanceDB and Dagster so that spawned workers import little.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import IterableDataset, get_worker_info

from realrag_core.data.image_io import DecodeLimits, decode_image
from realrag_core.data.sources.registry import iter_records


def content_id(data: bytes, caption: str) -> str:
    """Stable row id: the same picture under two captions is two rows; identical pairs are one."""
    return hashlib.sha256(data + b"\x00" + caption.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Scope:
    """Which records belong in the table (database styles of the world's concepts), and which are only checked:
    the ``reference`` styles of the world's concepts (held out of the database: the real images of FID and of the
    human study), read and decoded as the table's images are, so that a broken one is a reject, and hashed for
    label conflicts, but never embedded."""

    styles: frozenset[str]
    concept_split: dict[str, str]
    reference: frozenset[str] = frozenset()

    def split_of(self, concept: str, style: str) -> str | None:
        if style not in self.styles:
            return None
        return self.concept_split.get(concept)

    def role_of(self, style: str) -> str:
        return "database" if style in self.styles else "reference" if style in self.reference else ""


class ImageReadDataset(IterableDataset):
    """Yields one item per record in scope: ``ok`` (with pixels), ``skip`` (id already in the table),
    ``checked`` (a reference image that decodes; not embedded) or ``reject`` (with a reason). Records are sharded
    across workers by position, so each is read once. ``known_reference``: ids of reference images the last run
    found decodable (their bytes are hashed again, not decoded)."""

    def __init__(
        self,
        source_cfg,
        scope: Scope,
        transform: Callable,
        limits: DecodeLimits,
        known_ids=frozenset(),
        known_reference=frozenset(),
    ):
        self.source_cfg = source_cfg
        self.scope = scope
        self.transform = transform
        self.limits = limits
        self.known_ids = known_ids
        self.known_reference = known_reference

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for position, record in enumerate(iter_records(self.source_cfg, with_errors=True)):
            if position % workers != worker:
                continue
            if record.error:  # a listing that cannot become a row, whatever its style: recorded, never dropped
                yield {
                    "status": "reject",
                    "path": str(record.path),
                    "caption": record.caption,
                    "concept": record.concept,
                    "style": record.style,
                    "split": "",
                    "role": self.scope.role_of(record.style),
                    "reason": record.error,
                }
                continue
            split = self.scope.split_of(record.concept, record.style)
            if split is not None:
                yield self.read(record, split, position)
            elif record.style in self.scope.reference and record.concept in self.scope.concept_split:
                yield self.read(record, self.scope.concept_split[record.concept], position, embed=False)

    def read(self, record, split: str, position: int = 0, *, embed: bool = True) -> dict:
        """One record's outcome; ``embed=False`` (a reference image): decoded to check it, never transformed."""
        meta = {
            "path": str(record.path),
            "caption": record.caption,
            "concept": record.concept,
            "style": record.style,
            "split": split,
            "role": "database" if embed else "reference",
            "position": position,  # in the listing: which of two conflicting labels came first
        }
        if not record.caption:
            return {"status": "reject", **meta, "reason": "empty caption"}
        if len(record.caption) > self.limits.max_caption_chars:
            return {
                "status": "reject",
                **meta,
                "reason": f"caption too long: {len(record.caption)} characters (> {self.limits.max_caption_chars})",
            }
        try:
            data = record.path.read_bytes()
        except PermissionError:
            return {"status": "reject", **meta, "reason": "permission denied"}
        except IsADirectoryError:  # became a folder after the listing
            return {"status": "reject", **meta, "reason": "a folder named like an image"}
        except OSError as err:
            return {"status": "reject", **meta, "reason": f"unreadable file: {err.strerror or err}"}
        row_id = content_id(data, record.caption)
        meta["image_sha256"] = hashlib.sha256(data).hexdigest()[:32]  # the picture alone: label conflicts
        if row_id in (self.known_ids if embed else self.known_reference):
            return {"status": "skip" if embed else "checked", "id": row_id, **meta}
        image, reason = decode_image(data, self.limits)
        if reason:
            return {"status": "reject", **meta, "reason": reason}
        if not embed:
            return {"status": "checked", "id": row_id, **meta}
        try:
            pixels = self.transform(image)
        except Exception as err:  # noqa: BLE001 - a transform failure rejects the file, not the run
            return {"status": "reject", **meta, "reason": f"preprocessing failed: {type(err).__name__}: {err}"}
        return {"status": "ok", "id": row_id, **meta, "pixels": pixels}


def collate_read_batch(items: list[dict]) -> dict:
    ok = [i for i in items if i["status"] == "ok"]
    return {
        "ok": [{k: v for k, v in i.items() if k not in ("pixels", "status")} for i in ok],
        "pixels": torch.stack([i["pixels"] for i in ok]) if ok else None,
        "skipped": [i for i in items if i["status"] == "skip"],
        "checked": [{k: v for k, v in i.items() if k != "status"} for i in items if i["status"] == "checked"],
        "rejects": [{k: v for k, v in i.items() if k != "status"} for i in items if i["status"] == "reject"],
    }
