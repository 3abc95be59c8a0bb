"""The LanceDB table helpers on random unit vectors: IVF_PQ needs a few hundred rows to train."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from realrag_core.config.base import ConfigError
from realrag_core.config.loading import parse_config
from realrag_core.config.stages import IndexConfig
from realrag_core.embed.table import ensure_index, open_embedding_table, search, table_schema, upsert

DIM = 32


def _rows(ids, rng):
    v = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    n = len(ids)
    data = {
        "id": ids,
        "path": ids,
        "caption": ids,
        "concept": ids,
        "style": ["s"] * n,
        "split": ["known"] * n,
        "embedding": list(v),
        "model_id": ["m"] * n,
        "added_at": [datetime.now(timezone.utc)] * n,
    }
    return pa.Table.from_pydict(data, schema=table_schema(DIM, "m")), v


def test_ivf_pq_index_recall_and_new_rows_are_folded_in(tmp_path):
    rng = np.random.default_rng(0)
    table, _ = open_embedding_table(str(tmp_path), "t", DIM, "m")
    rows, vecs = _rows([f"r{i}" for i in range(600)], rng)
    upsert(table, rows)
    cfg = IndexConfig(threshold_rows=500, type="IVF_PQ", num_partitions=4, num_sub_vectors=8, nprobes=4)
    state = ensure_index(table, cfg)
    assert state.indexed and state.indexed_rows == 600 and state.unindexed_rows == 0
    exact = vecs @ vecs[:20].T
    hits = [search(table, vecs[i], 1, cfg)["id"][0].as_py() == f"r{i}" for i in range(20)]
    assert all(hits) and np.argmax(exact[:, 0]) == 0  # refine re-ranks with exact distances
    more, _ = _rows([f"n{i}" for i in range(50)], rng)
    upsert(table, more)
    folded = ensure_index(table, cfg)
    assert folded.action == "optimized" and folded.unindexed_rows == 0 and folded.indexed_rows == 650


def test_upsert_updates_instead_of_duplicating(tmp_path):
    rng = np.random.default_rng(1)
    table, _ = open_embedding_table(str(tmp_path), "t", DIM, "m")
    rows, _ = _rows(["a", "b"], rng)
    upsert(table, rows)
    upsert(table, rows)
    assert table.count_rows() == 2


def test_pq_threshold_below_training_size_is_a_config_error(smoke_data, tmp_path):
    smoke_data["embeddings"]["index"] = {"type": "IVF_PQ", "threshold_rows": 10}
    with pytest.raises(ConfigError, match="embeddings.index.*256"):
        parse_config(smoke_data, tmp_path)


def _concurrent_writer(args):
    """One of several processes merging overlapping batches into the same table (a second run of
    image_embeddings started while the first still writes)."""
    uri, worker, ids, lock = args
    import lancedb

    from realrag_core.embed import table as vector_table

    table = lancedb.connect(uri).open_table("t")
    rng = np.random.default_rng(worker)
    order = rng.permutation(len(ids))
    for start in range(0, len(ids), 25):
        rows, _ = _rows([ids[i] for i in order[start : start + 25]], rng)
        if lock:
            vector_table.upsert(table, rows)
        else:  # object storage: no shared lock, merge_insert as is
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
    return worker


def _write_concurrently(uri, ids, lock, writers=3):
    from realrag_core.testing.spawned import run_spawned

    run_spawned(_concurrent_writer, [(uri, w, ids, lock) for w in range(writers)])


@pytest.mark.slow
def test_concurrent_writers_of_a_local_table_leave_one_row_per_id(tmp_path):
    open_embedding_table(str(tmp_path), "t", DIM, "m")
    ids = [f"r{i}" for i in range(150)]
    _write_concurrently(str(tmp_path), ids, lock=True)
    import lancedb

    got = lancedb.connect(str(tmp_path)).open_table("t").to_arrow()["id"].to_pylist()
    assert sorted(got) == sorted(ids)  # none lost, none twice


@pytest.mark.slow
def test_duplicates_left_by_concurrent_writers_are_repaired(tmp_path, s3_bucket):
    """On object storage nothing is locked: whatever duplicates concurrent merges leave (lancedb#2463), the
    repair keeps the last-written row of each id and loses none."""
    from realrag_core.embed.table import repair_duplicates

    rng = np.random.default_rng(5)
    table, _ = open_embedding_table(str(tmp_path), "local", DIM, "m")
    rows, _ = _rows([f"r{i}" for i in range(40)], rng)
    table.add(rows)
    later, later_vecs = _rows([f"r{i}" for i in range(0, 40, 4)], rng)  # 10 ids written a second time
    table.add(later)  # what the race leaves: two rows for one id
    assert repair_duplicates(table) == 10 and repair_duplicates(table) == 0
    got = table.to_arrow().sort_by("id")
    assert got["id"].to_pylist() == sorted(f"r{i}" for i in range(40))
    kept = {r["id"]: np.array(r["embedding"]) for r in got.to_pylist()}
    assert all(np.allclose(kept[f"r{i}"], later_vecs[j]) for j, i in enumerate(range(0, 40, 4)))
    uri = f"s3://{s3_bucket}/lancedb"
    remote, _ = open_embedding_table(uri, "t", DIM, "m")
    ids = [f"r{i}" for i in range(150)]
    _write_concurrently(uri, ids, lock=False)
    repair_duplicates(remote)
    import lancedb

    assert sorted(lancedb.connect(uri).open_table("t").to_arrow()["id"].to_pylist()) == sorted(ids)


@pytest.mark.parametrize("index", [None, "IVF_PQ", "IVF_HNSW_SQ"])
def test_batched_search_returns_what_one_query_per_vector_returns(tmp_path, index):
    from realrag_core.embed.table import search_batch

    rng = np.random.default_rng(1)
    table, _ = open_embedding_table(str(tmp_path), "t", DIM, "m")
    rows, vecs = _rows([f"r{i}" for i in range(600)], rng)
    upsert(table, rows)
    indexed = index is not None
    cfg = IndexConfig(
        threshold_rows=500 if indexed else 10_000,
        type=index or "IVF_PQ",
        num_partitions=4,
        num_sub_vectors=8,
        nprobes=2,  # of 4 partitions: the index's candidates are not the exact neighbours
        refine_factor=2,
    )
    assert ensure_index(table, cfg).indexed == indexed
    queries = rng.standard_normal((37, DIM)).astype(np.float32)
    one_by_one = [search(table, q, 3, cfg).to_pylist() for q in queries]
    for chunk in (1024, 10, 1):  # several chunks, and single-vector calls, give the same rows in query order
        batched = search_batch(table, queries, 3, cfg, chunk=chunk)
        assert [[r["id"] for r in rows] for rows in batched] == [[r["id"] for r in rows] for rows in one_by_one]
        assert np.allclose(
            [[r["_distance"] for r in rows] for rows in batched],
            [[r["_distance"] for r in rows] for rows in one_by_one],
            atol=1e-6,
        )
    if indexed:  # the index's answers, not the exact ones: the batched route must follow the index
        from realrag_core.embed.table import exact_search_batch

        exact = [[r["id"] for r in rows] for rows in exact_search_batch(table, queries, 3)]
        assert exact != [[r["id"] for r in rows] for rows in one_by_one]


def test_exact_batched_search_with_k_above_the_row_count_returns_every_row_in_order(tmp_path):
    from realrag_core.embed.table import exact_search_batch, search_batch

    rng = np.random.default_rng(2)
    table, _ = open_embedding_table(str(tmp_path), "t", DIM, "m")
    rows, _ = _rows([f"r{i}" for i in range(5)], rng)
    upsert(table, rows)
    cfg = IndexConfig(threshold_rows=10_000)
    queries = rng.standard_normal((4, DIM)).astype(np.float32) * 3.0  # not unit norm: cosine must normalise
    one_by_one = [search(table, q, 8, cfg).to_pylist() for q in queries]
    for batched in (exact_search_batch(table, queries, 8), search_batch(table, queries, 8, cfg)):
        assert [[r["id"] for r in rows] for rows in batched] == [[r["id"] for r in rows] for rows in one_by_one]
        assert all(len(rows) == 5 for rows in batched)
        assert np.allclose(
            [[r["_distance"] for r in rows] for rows in batched],
            [[r["_distance"] for r in rows] for rows in one_by_one],
            atol=1e-6,
        )
        assert [sorted(r) for r in batched[0]] == [sorted(r) for r in one_by_one[0]]  # same columns
