"""The artifact store's shared readers and writers."""

import json
import os

import pytest

from realrag_core.store import ArtifactStore, retriever_key


def test_a_report_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    store.write_report("fid", {"results": [1, 2, 3]})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write_report("fid", {"results": ["half"]})
    assert store.read_report("fid") == {"results": [1, 2, 3]}  # the old report, whole
    monkeypatch.undo()
    store.write_report("fid", {"results": [4]})
    assert json.loads((tmp_path / "reports" / "fid.json").read_text()) == {"results": [4]}


def test_negatives_read_empty_before_stage_3_ran(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = ArtifactStore(tmp_path)
    assert store.read_negatives() == []
    store.negatives_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"prompt_id": ["p"], "negative_id": ["n"]}), store.negatives_path)
    assert store.read_negatives() == [{"prompt_id": "p", "negative_id": "n"}]


def test_each_protocol_keeps_its_retrievers_apart_and_unseen_keeps_the_old_place(tmp_path):
    store = ArtifactStore(tmp_path)
    assert retriever_key("retriever") == "retriever" == retriever_key("retriever", "unseen_concepts")
    assert store.retriever_dir("retriever", "seen_concepts") == store.checkpoint_dir("retriever__seen_concepts")
    assert store.retriever_dir("retriever") == store.checkpoint_dir("retriever")
