"""What a source kind declares. Each kind's module builds one ``SourceKind``; ``registry`` collects them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from realrag_core.data.captions import MANIFEST_NAME
from realrag_core.data.sources.listing import ImageRecord, listing_summary, stat_entry


@dataclass(frozen=True)
class SourceKind:
    """One kind of image source.

    ``config``: its pydantic section (its ``kind`` literal names it in YAML; a ``cache_folder`` class variable, if
    any, is where ``model_cache`` puts its downloads). ``records(source, with_errors)``: every record it lists, in
    a stable order, with the listings that cannot become rows when ``with_errors``. ``prepare(source, progress)``:
    make it ready to list (build a world, export a dataset; default: check the listing is not empty).
    ``fingerprint_paths(source)``: the few paths whose metadata changes when images are added or removed (default:
    the built ``captions.csv``). ``check_world(source, world)``: refuse a world config this source cannot serve.
    ``dataset_name(source)``: what a comparison table calls the data (default: the kind's name)."""

    config: type
    records: Callable[..., Iterator[ImageRecord]]
    prepare: Callable[..., dict] | None = None
    fingerprint_paths: Callable[..., list[Path]] | None = None
    check_world: Callable[..., None] | None = None
    dataset_name: Callable[..., str] | None = None

    @property
    def name(self) -> str:
        return self.config.model_fields["kind"].default

    def prepare_source(self, source, progress: bool = True) -> dict:
        if self.prepare is not None:
            return self.prepare(source, progress)
        summary = listing_summary(self.records(source))
        if summary["images"] == 0:
            raise ValueError(f"the {source.kind} source lists no images")
        return summary

    def fingerprint(self, source) -> dict:
        paths = self.fingerprint_paths(source) if self.fingerprint_paths else [source.image_dir / MANIFEST_NAME]
        entries = [stat_entry(p) for p in paths]
        digest = hashlib.sha256(json.dumps([source.kind, entries]).encode()).hexdigest()[:16]
        return {"digest": digest, "entries": len(entries)}
