"""The LanceDB table helpers on random unit vectors: IVF_PQ needs a few hundred rows to train."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from realrag_core.config import ConfigError, IndexConfig, parse_config
from realrag_core.vector_table import ensure_index, open_embedding_table, search, table_schema, upsert

DIM = 32


def _rows(ids, rng):
    v = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    n = len(ids)
    data = {"id": ids, "path": ids, "caption": ids, "concept": ids, "style": ["s"] * n, "split": ["known"] * n,
            "embedding": list(v), "model_id": ["m"] * n, "added_at": [datetime.now(timezone.utc)] * n}  # fmt: skip
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
