"""The artifact store's shared readers and writers."""

import json
import os

import pytest

from realrag_core.storage.store import ArtifactStore, retriever_key


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


def test_paths_under_the_artifacts_root_are_written_relative_to_it(tmp_path):
    """Reports travel with the artifacts (object storage, another machine): no path of the machine that wrote
    them, except a user's own source outside the root, which stays as given."""
    from pathlib import Path

    root = tmp_path / "artifacts"
    store = ArtifactStore(root)
    user_source = tmp_path / "my_photos" / "a.jpg"
    report = {
        "loss_plot": str(root / "reports" / "judge_loss.png"),
        "rejects_path": root / "rejects" / "image_embeddings.parquet",  # a Path
        "nested": {"near_duplicates": [{"path": str(root / "source" / "x.png"), "cosine": 0.99}]},
        "source": str(user_source),
        "root": str(root),
        "relative": "already/relative.png",
        "caption": "a photo of a /car",  # text that only looks like a path is not one: it is not absolute
        "n": 3,
    }
    written = json.loads(store.write_report("r", report).read_text())
    assert written["loss_plot"] == "reports/judge_loss.png"
    assert written["rejects_path"] == "rejects/image_embeddings.parquet"
    assert written["nested"]["near_duplicates"][0] == {"path": "source/x.png", "cosine": 0.99}
    assert written["source"] == str(user_source) and written["root"] == "."
    assert written["relative"] == "already/relative.png" and written["caption"] == "a photo of a /car"
    assert written["n"] == 3
    # a root reached through a symlink is the same root
    link = tmp_path / "link"
    link.symlink_to(root)
    again = json.loads(ArtifactStore(link).write_report("r", {"p": str(link / "reports" / "a.png")}).read_text())
    assert again["p"] == "reports/a.png"
    assert not any(str(tmp_path) in json.dumps(v) for k, v in written.items() if k != "source")
    assert Path(root, written["loss_plot"]).parent == store.reports_dir
