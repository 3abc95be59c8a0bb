"""Cheap fingerprints of an image source, for a sensor that notices the database grew.

Only metadata is read: the captions file's size and modification time, or one ``stat`` per class folder (a
folder's modification time changes when a file is added, removed or renamed in it). Nothing is decoded or
hashed, so a tick costs the same on a million images as on a hundred; the embedding run it triggers is what
finds out exactly which images are new (by content hash).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from realrag_core.config.sources import CaptionFileSourceConfig, ClassFolderSourceConfig
from realrag_core.data.sources import MANIFEST_NAME, classify_entry


def _stat(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def source_fingerprint(source) -> dict:
    """``{"digest": ..., "entries": n}``: changes whenever images are listed, added or removed."""
    if isinstance(source, ClassFolderSourceConfig):
        with os.scandir(source.root) as it:  # what the listing calls a class folder (a link loop is not one)
            folders = sorted(e.path for e in it if classify_entry(Path(e.path), source.root.resolve())[0] == "dir")
        entries = [_stat(source.root)] + [_stat(Path(f)) for f in folders]
    elif isinstance(source, CaptionFileSourceConfig):
        entries = [_stat(source.captions), _stat(source.image_dir)]
    else:  # built sources (demo, synthetic, exported datasets) list their images in one manifest
        entries = [_stat(source.image_dir / MANIFEST_NAME)]
    digest = hashlib.sha256(json.dumps([source.kind, entries]).encode()).hexdigest()[:16]
    return {"digest": digest, "entries": len(entries)}
