"""The LanceDB image-embedding table: schema, model guard, upsert, vector index and search."""

from __future__ import annotations

import fcntl
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realrag_core.config.stages import IndexConfig

VECTOR_COLUMN = "embedding"
MODEL_KEY = b"realrag.model_id"
DIM_KEY = b"realrag.dim"


class ModelMismatchError(RuntimeError):
    """The table was written by another embedding model (or with another dimension)."""


def table_schema(dim: int, model_id: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("caption", pa.string()),
            pa.field("concept", pa.string()),
            pa.field("style", pa.string()),
            pa.field("split", pa.string()),
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dim)),
            pa.field("model_id", pa.string()),
            pa.field("added_at", pa.timestamp("us", tz="UTC")),
        ],
        metadata={MODEL_KEY: model_id.encode(), DIM_KEY: str(dim).encode()},
    )


def table_model(table) -> tuple[str | None, int | None]:
    meta = table.schema.metadata or {}
    model = meta.get(MODEL_KEY)
    dim = meta.get(DIM_KEY)
    if dim is None:  # fall back on the vector column's width
        dim = table.schema.field(VECTOR_COLUMN).type.list_size
    return (model.decode() if model else None), int(dim)


def open_embedding_table(uri: str, name: str, dim: int, model_id: str, on_mismatch: str = "error"):
    """Open (or create) the table; refuse one written by another model before any work is done.

    Returns ``(table, recreated)``; ``recreated`` is True when a mismatching table was dropped by policy.
    """
    import lancedb

    db = lancedb.connect(uri)
    if name in db.table_names():
        table = db.open_table(name)
        stored_model, stored_dim = table_model(table)
        if stored_model == model_id and stored_dim == dim:
            return table, False
        message = (
            f"LanceDB table {name!r} at {uri} holds embeddings of model {stored_model!r} (dim {stored_dim}), "
            f"not {model_id!r} (dim {dim})"
        )
        if on_mismatch != "recreate":
            raise ModelMismatchError(
                message + "; set embeddings.on_model_mismatch: recreate to rebuild it, or use another table_name"
            )
        db.drop_table(name)
        return db.create_table(name, schema=table_schema(dim, model_id)), True
    return db.create_table(name, schema=table_schema(dim, model_id)), False


def existing_ids(table) -> frozenset[str]:
    if table.count_rows() == 0:
        return frozenset()
    # only the id column is read, not the vectors
    return frozenset(read_rows(table, ["id"])["id"].to_pylist())


def existing_paths(table) -> dict[str, str]:
    """id -> the image path each row records (the vectors are not read)."""
    if table.count_rows() == 0:
        return {}
    rows = read_rows(table, ["id", "path"])
    return dict(zip(rows["id"].to_pylist(), rows["path"].to_pylist()))


def id_filters(ids, size: int = 1000):
    """``id IN (...)`` filters over ``ids`` (sorted, quoted), ``size`` ids each."""
    ids = sorted(ids)
    for start in range(0, len(ids), size):
        yield "id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + size]) + ")"


def refresh_paths(table, paths: dict[str, str]) -> int:
    """Rewrite the path of the rows named (id -> new path), keeping their vectors: the same picture now lies
    elsewhere (a moved clone, a renamed source folder). One merge_insert per 1,000 rows; returns rows rewritten."""
    done = 0
    for where in id_filters(paths):
        rows = table.search().where(where).limit(None).to_arrow()
        new = pa.array([paths[i] for i in rows["id"].to_pylist()], pa.string())
        upsert(table, rows.set_column(rows.schema.get_field_index("path"), "path", new))
        done += rows.num_rows
    return done


def open_row_image(path: str):
    """The picture a table row points to, as RGB; a clear error when it is no longer there."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: a database image the embedding table points to is gone (the clone or the source folder "
            "moved, or the file was removed, after image_embeddings ran): materialize image_embeddings, which "
            "rewrites the paths of moved images and removes rows of missing ones"
        ) from None


def read_rows(table, columns=("id", "concept", "style", VECTOR_COLUMN)) -> pa.Table:
    """Every row of the table, only the named columns."""
    return table.search().select(list(columns)).limit(None).to_arrow()


def open_database_table(cfg):
    """The profile's image-embedding table (stage 1's output), opened for reading."""
    return open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)


def open_table_readonly(uri: str, name: str):
    import lancedb

    db = lancedb.connect(uri)
    if name not in db.table_names():
        raise FileNotFoundError(f"no LanceDB table {name!r} at {uri}: materialize image_embeddings first")
    return db.open_table(name)


@contextmanager
def _write_lock(table):
    """An exclusive lock per local table across processes; object storage has none (see repair_duplicates)."""
    uri = str(table.uri)
    if "://" in uri and not uri.startswith("file://"):
        yield
        return
    folder = Path(uri.removeprefix("file://"))
    with open(folder.parent / f".{folder.name}.write.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upsert(table, rows: pa.Table) -> None:
    """Insert new ids, update existing ones: rerunning never duplicates a row. Concurrent merge_insert into one
    table can insert a row twice (lancedb#2463): writers of a local table take a file lock; on object storage,
    where no lock is shared, the writer calls ``repair_duplicates`` after its last write."""
    with _write_lock(table):
        table.checkout_latest()  # match against what other writers committed, not this handle's old version
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows.cast(table.schema))
        )


def repair_duplicates(table) -> int:
    """Leave one row per id (the last written) where concurrent writers left several; returns rows removed."""
    table.checkout_latest()
    ids = read_rows(table, ["id"])["id"]
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return 0
    removed = 0
    with _write_lock(table):
        for row_id in repeated.to_pylist():
            quoted = row_id.replace("'", "''")
            copies = table.search().where(f"id = '{quoted}'").limit(None).to_arrow()
            keep = (
                copies.sort_by([("added_at", "descending")]).slice(0, 1)
                if "added_at" in copies.column_names
                else copies.slice(0, 1)
            )
            table.delete(f"id = '{quoted}'")
            table.add(keep.cast(table.schema))
            removed += copies.num_rows - 1
    return removed


@dataclass(frozen=True)
class IndexState:
    indexed: bool
    action: str  # "none (below threshold)", "created IVF_HNSW_SQ", "optimized", "up to date"
    indexed_rows: int
    unindexed_rows: int


def _vector_index(table):
    for idx in table.list_indices():
        if list(idx.columns) == [VECTOR_COLUMN]:
            return idx
    return None


def ensure_index(table, cfg: IndexConfig) -> IndexState:
    """Build the vector index once the table passes the threshold; fold new rows into it afterwards."""
    from lancedb.index import HnswSq, IvfPq

    rows = table.count_rows()
    index = _vector_index(table)
    if index is None:
        if rows < cfg.threshold_rows:
            return IndexState(False, f"none (exact search below {cfg.threshold_rows} rows)", 0, rows)
        dim = table.schema.field(VECTOR_COLUMN).type.list_size
        partitions = cfg.num_partitions or max(1, int(math.sqrt(rows)))
        if cfg.type == "IVF_PQ":
            sub_vectors = cfg.num_sub_vectors or max(1, dim // 8)
            config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub_vectors)
        else:
            config = HnswSq(distance_type="cosine", num_partitions=partitions)
        table.create_index(VECTOR_COLUMN, config=config)
        action = f"created {cfg.type} ({partitions} partitions)"
    else:
        stats = table.index_stats(index.name)
        if stats.num_unindexed_rows == 0:
            return IndexState(True, "up to date", stats.num_indexed_rows, 0)
        table.optimize()  # merges new rows into the index
        action = "optimized"
    stats = table.index_stats(_vector_index(table).name)
    return IndexState(True, action, stats.num_indexed_rows, stats.num_unindexed_rows)


def search(table, query: np.ndarray, k: int, cfg: IndexConfig, columns=("id", "concept", "style", "path")):
    """Cosine nearest neighbours of one query vector (with ``_distance``); uses the index, re-ranked
    exactly by ``refine_factor``, when there is one."""
    q = table.search(np.asarray(query, dtype=np.float32), vector_column_name=VECTOR_COLUMN)
    q = q.distance_type("cosine").limit(k).select([*columns, "_distance"])
    if _vector_index(table) is not None:
        q = q.nprobes(cfg.nprobes).refine_factor(cfg.refine_factor)
    return q.to_arrow()


def search_batch(
    table,
    queries: np.ndarray,
    k: int,
    cfg: IndexConfig,
    *,
    columns=("id", "concept", "style", "path"),
    chunk: int = 1024,
) -> list[list[dict]]:
    """``search`` for many query vectors at once: the k nearest rows of each query, in query order, each with
    ``_distance``; the same results as one ``search`` per query. On an indexed table ``indexed_search_batch``
    (LanceDB's multi-vector ANN query, one re-rank for all); without an index (exact search either way)
    ``exact_search_batch``: one blocked matrix product over the table's vectors."""
    queries = np.asarray(queries, dtype=np.float32)
    if len(queries) == 1:
        return [search(table, queries[0], k, cfg, columns).to_pylist()]
    if _vector_index(table) is None:  # exact search anyway: one blocked matrix product beats a query per vector
        return exact_search_batch(table, queries, k, columns)
    return indexed_search_batch(table, queries, k, cfg, columns=columns, chunk=chunk)


def indexed_search_batch(
    table,
    queries: np.ndarray,
    k: int,
    cfg: IndexConfig,
    *,
    columns=("id", "concept", "style", "path"),
    chunk: int = 1024,
) -> list[list[dict]]:
    """What ``search`` returns on an indexed table, for many queries: the index's ``k * refine_factor`` nearest
    candidates of each query (LanceDB's multi-vector ANN query, ``chunk`` vectors a call), re-ranked by exact
    cosine distance, ties by row id, as LanceDB's refine step orders them. LanceDB refines each query on its own
    (a random read of its candidates' vectors per query: most of a batched query's time); here every candidate row
    is read once (``take_row_ids``, sorted) and all distances come from one vectorised pass."""
    queries = np.asarray(queries, dtype=np.float32)
    query_of, row_of = [], []
    for start in range(0, len(queries), chunk):
        part = queries[start : start + chunk]
        q = table.search(list(part) if len(part) > 1 else part[0], vector_column_name=VECTOR_COLUMN)
        got = q.distance_type("cosine").limit(k * cfg.refine_factor).select(["_distance"]).with_row_id(True)
        got = got.nprobes(cfg.nprobes).to_arrow()
        index = got["query_index"].to_numpy() if "query_index" in got.column_names else np.zeros(got.num_rows, int)
        query_of.append(index.astype(np.int64) + start)
        row_of.append(got["_rowid"].to_numpy().astype(np.uint64))
    out: list[list[dict]] = [[] for _ in range(len(queries))]
    query_of, row_of = np.concatenate(query_of), np.concatenate(row_of)
    if not len(row_of):
        return out
    unique_rows, which = np.unique(row_of, return_inverse=True)
    rows = table.take_row_ids(unique_rows.tolist()).select(list(dict.fromkeys((*columns, VECTOR_COLUMN))))
    rows = rows.with_row_id().to_arrow()
    order = np.argsort(rows["_rowid"].to_numpy())
    if not np.array_equal(rows["_rowid"].to_numpy()[order], unique_rows):
        raise RuntimeError("take_row_ids did not return every candidate row")  # a concurrent delete: retry
    vectors = rows[VECTOR_COLUMN].combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)[order]
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    queries, matrix = unit(queries), unit(matrix)
    distance = np.empty(len(row_of), np.float32)
    for start in range(0, len(row_of), 65536):  # candidates in blocks: k x refine_factor x queries vectors at most
        end = start + 65536
        distance[start:end] = 1.0 - np.einsum(
            "ij,ij->i", queries[query_of[start:end]], matrix[which[start:end]], dtype=np.float32
        )
    ranked = np.lexsort((row_of, distance, query_of))  # by query, then distance, then row id
    grouped = query_of[ranked]
    ranked = ranked[np.arange(len(ranked)) - np.searchsorted(grouped, grouped) < k]  # each query's first k
    values = {c: rows[c].to_pylist() for c in columns}
    position = order.argsort()[which[ranked]]  # each kept candidate's place in ``rows``
    for j, i in zip(ranked.tolist(), position.tolist()):
        out[query_of[j]].append({**{c: values[c][i] for c in columns}, "_distance": float(distance[j])})
    return out


def exact_search_batch(
    table, queries: np.ndarray, k: int, columns=("id", "concept", "style", "path")
) -> list[list[dict]]:
    """What LanceDB's flat (exact) cosine search returns for each query, from the table's vectors read once and
    ``topk.blocked_topk``: for many queries on a table without an index (bench/bench_batched_retrieval.py)."""
    from realrag_core.embed.topk import blocked_topk

    rows = read_rows(table, tuple(dict.fromkeys((*columns, VECTOR_COLUMN))))
    vectors = rows[VECTOR_COLUMN].combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    queries = np.asarray(queries, dtype=np.float32)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    sims, idx = blocked_topk(unit(queries), unit(matrix), min(k, len(matrix)))
    values = {c: rows[c].to_pylist() for c in columns}
    return [
        [{**{c: values[c][i] for c in columns}, "_distance": 1.0 - s} for s, i in zip(srow, irow) if i >= 0]
        for srow, irow in zip(sims.tolist(), idx.tolist())
    ]


def ids_at_version(uri: str, name: str, version: int) -> pa.ChunkedArray | None:
    """The row ids the table held at ``version`` (Lance keeps old versions until they are cleaned up); None when
    that version is gone."""
    import lancedb

    table = lancedb.connect(uri).open_table(name)
    try:
        table.checkout(version)
    except Exception:  # noqa: BLE001 - cleaned-up or unknown version: the caller mines in full
        return None
    return table.search().select(["id"]).limit(None).to_arrow()["id"]
