"""The ``captions.csv`` every built or exported source ends with: its name, columns and an atomic writer (shared
by the source readers and the world builders, which must not import each other)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

MANIFEST_NAME = "captions.csv"
MANIFEST_COLUMNS = ("path", "caption", "concept", "style")


def write_manifest(path: Path, rows: list[dict]) -> None:
    """Write a captions.csv atomically (a crash leaves the old manifest, never half a file)."""
    columns = list(MANIFEST_COLUMNS) + sorted({k for r in rows for k in r} - set(MANIFEST_COLUMNS))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
