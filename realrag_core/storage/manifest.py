"""A resumable image manifest: a folder of Parquet parts, one per finished batch, each written atomically,
so a crash loses at most the batch in flight and a rerun reads what is done."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from PIL import Image

MANIFEST_DIR = "manifest"


def read_manifest(folder: Path) -> pa.Table | None:
    path = folder / MANIFEST_DIR
    parts = sorted(str(p) for p in path.glob("part-*.parquet")) if path.is_dir() else []
    if not parts:
        return None
    # finished parts only: a part being written (or left by a killed run) has another name
    schemas = {pq.read_schema(part) for part in parts}
    if len(schemas) == 1:
        return ds.dataset(parts, format="parquet").to_table()
    # parts written by image towers of different widths (a new base CLIP re-embeds the same images): fixed-size
    # embedding lists of two sizes do not unify, so they are read as variable-size lists; readers select one
    # encoder's rows before stacking them
    tables = []
    for part in parts:
        table = pq.read_table(part)
        if "embedding" in table.column_names:
            i = table.column_names.index("embedding")
            table = table.set_column(i, "embedding", table["embedding"].cast(pa.list_(pa.float32())))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive")


def append_part(folder: Path, rows: dict[str, list], schema: pa.Schema) -> Path:
    """Add one batch to the manifest: whole or not at all."""
    (folder / MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
    part = folder / MANIFEST_DIR / f"part-{uuid.uuid4().hex}.parquet"
    tmp = part.with_name(f".{part.name}.tmp")
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), tmp)
    tmp.replace(part)
    return part


def save_png(img: Image.Image, path: Path) -> bytes:
    """Write an image as PNG atomically (creating its folder) and return the bytes written."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)  # whole or absent: a rerun may trust that the file exists
    return buf.getvalue()
