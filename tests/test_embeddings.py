import numpy as np
import pyarrow.parquet as pq
import pytest

from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.data.sources.caption_file import CaptionFileSourceConfig
from realrag_core.config.stages import EmbeddingsConfig, IndexConfig
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope, content_id
from realrag_core.embed.table import ModelMismatchError, open_embedding_table, search

CONCEPTS = {"red circle": "known", "blue square": "known", "green triangle": "novel", "orange star": "novel"}


@pytest.fixture
def clip(smoke_cfg, tmp_path):
    folder = tmp_path / "clip"
    model, *_ = create_untrained(folder, smoke_cfg.clip.architecture, seed=0)
    save_clip(model, folder)
    return load_clip(folder)


@pytest.fixture
def source(user_folder):
    return CaptionFileSourceConfig(image_dir=user_folder, captions=user_folder / "captions.csv")


def _run(source, clip, tmp_path, **cfg):
    ecfg = EmbeddingsConfig(batch_size=4, num_workers=0, **cfg)
    scope = Scope(frozenset({"filled", "shadow"}), CONCEPTS)
    return embed_source(
        source,
        scope,
        clip,
        uri=str(tmp_path / "db"),
        cfg=ecfg,
        rejects_path=tmp_path / "rejects.parquet",
        progress=False,
    )


def _table(tmp_path, clip):
    table, _ = open_embedding_table(str(tmp_path / "db"), "image_embeddings", clip.dim, clip.model_id)
    return table


def test_rows_rejects_and_ids(source, clip, tmp_path, user_folder):
    report = _run(source, clip, tmp_path)
    # 8 drawings + the same picture under a second caption; the pair listed twice is one row
    assert report.inserted == 9 and report.rows == 9 and report.duplicates_in_source == 1
    rows = _table(tmp_path, clip).to_arrow().to_pylist()
    assert len({r["id"] for r in rows}) == 9
    red = [r for r in rows if r["path"].endswith("filled-red-circle.png")]
    assert sorted(r["caption"] for r in red) == ["a red disc", "red circle"]
    assert red[0]["id"] == content_id((user_folder / "filled-red-circle.png").read_bytes(), red[0]["caption"])
    assert {r["split"] for r in rows} == {"known", "novel"} and {r["model_id"] for r in rows} == {clip.model_id}
    emb = np.stack([r["embedding"] for r in rows])
    assert emb.shape == (9, clip.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # every damaged file is recorded with its reason; nothing is silently dropped
    rejects = pq.read_table(tmp_path / "rejects.parquet").to_pylist()
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in rejects}
    assert set(reasons) == {
        "empty.png",
        "truncated.png",
        "not_an_image.png",
        "folder.png",
        "tiny.png",
        "missing.png",
        "filled-green-triangle.png",
    }
    assert "empty file" in reasons["empty.png"] and "a folder named like an image" in reasons["folder.png"]
    assert "no such file" in reasons["missing.png"] and "empty caption" in reasons["filled-green-triangle.png"]
    assert report.rejected == len(rejects) == 7


def test_rerun_is_idempotent_and_incremental(source, clip, tmp_path, user_folder):
    first = _run(source, clip, tmp_path)
    second = _run(source, clip, tmp_path)
    # every listing already in the table is skipped, the twice-listed pair included
    assert second.inserted == 0 and second.rows == first.rows
    assert second.skipped_unchanged == first.inserted + first.duplicates_in_source
    # a new image and a changed image: only those are embedded; the changed one is a new row (new content)
    from realrag_core.data.sources.synthetic import draw_concept

    draw_concept("orange", "star", "outline", 32).save(user_folder / "shadow-orange-star.png")
    with (user_folder / "captions.csv").open("a") as fh:
        fh.write("extra.png,blue square,blue square,shadow\n")
    draw_concept("blue", "square", "striped", 32).save(user_folder / "extra.png")
    third = _run(source, clip, tmp_path)
    # the changed image's old row goes (its content hash is no longer listed): one more row in all
    assert third.inserted == 2 and third.removed == 1 and third.rows == first.rows + 1 == third.valid_images
    assert third.table_version > first.table_version
    ids = {r["id"] for r in _table(tmp_path, clip).to_arrow().to_pylist()}
    assert content_id((user_folder / "shadow-orange-star.png").read_bytes(), "orange star") in ids


def test_a_moved_source_folder_rewrites_paths_and_keeps_the_vectors(source, clip, tmp_path, user_folder):
    """A clone or source folder moved elsewhere: nothing is embedded again, every row's path follows the listing
    (later stages open the pictures by it), the vectors stay; a rerun then changes nothing."""
    import os

    first = _run(source, clip, tmp_path)
    before = {r["id"]: r for r in _table(tmp_path, clip).to_arrow().to_pylist()}
    moved = tmp_path / "elsewhere" / "images"
    moved.parent.mkdir()
    os.rename(user_folder, moved)
    source = CaptionFileSourceConfig(image_dir=moved, captions=moved / "captions.csv")
    second = _run(source, clip, tmp_path)
    assert second.inserted == 0 and second.removed == 0 and second.paths_refreshed == first.rows == second.rows
    after = {r["id"]: r for r in _table(tmp_path, clip).to_arrow().to_pylist()}
    assert after.keys() == before.keys()
    for i, row in after.items():
        assert row["path"] == str(moved / os.path.relpath(before[i]["path"], user_folder))
        assert os.path.isfile(row["path"]) and row["embedding"] == before[i]["embedding"]
    third = _run(source, clip, tmp_path)
    assert third.paths_refreshed == 0 and third.table_version == second.table_version > first.table_version


def test_removed_images_leave_the_table_unless_the_source_looks_gone(source, clip, tmp_path, user_folder):
    first = _run(source, clip, tmp_path)
    lines = (user_folder / "captions.csv").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("shadow-blue-square.png")]
    (user_folder / "captions.csv").write_text("\n".join(kept) + "\n")
    second = _run(source, clip, tmp_path)
    assert second.removed == 1 and second.rows == first.rows - 1 and second.stale_kept == 0
    (user_folder / "captions.csv").write_text(lines[0] + "\n")  # the listing is suddenly empty
    third = _run(source, clip, tmp_path)
    assert third.removed == 0 and third.stale_kept == second.rows and third.rows == second.rows  # refused: kept
    kept_all = _run(source, clip, tmp_path, remove_missing=False)
    assert kept_all.removed == 0 and kept_all.rows == second.rows


def test_crash_mid_run_keeps_flushed_rows_and_resume_completes(source, clip, tmp_path, monkeypatch):
    from realrag_core.embed import embedding as embed_images

    calls = {"n": 0}
    real_upsert = embed_images.upsert

    def failing_upsert(table, rows):
        calls["n"] += 1
        if calls["n"] >= 2:  # the disk stays full
            raise RuntimeError("disk full")
        real_upsert(table, rows)

    monkeypatch.setattr(embed_images, "upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="disk full"):
        embed_source(
            source,
            Scope(frozenset({"filled", "shadow"}), CONCEPTS),
            clip,
            uri=str(tmp_path / "db"),
            cfg=EmbeddingsConfig(batch_size=2, num_workers=0),
            rejects_path=tmp_path / "rejects.parquet",
            flush_rows=2,
            progress=False,
        )
    kept = _table(tmp_path, clip).count_rows()
    assert kept == 2
    monkeypatch.setattr(embed_images, "upsert", real_upsert)
    resumed = _run(source, clip, tmp_path)
    assert resumed.rows == 9 and resumed.inserted == 9 - kept  # only what was lost is embedded again


def test_workers_give_the_same_table(source, clip, tmp_path):
    a = _run(source, clip, tmp_path / "a")
    b = embed_source(
        source,
        Scope(frozenset({"filled", "shadow"}), CONCEPTS),
        clip,
        uri=str(tmp_path / "b" / "db"),
        cfg=EmbeddingsConfig(batch_size=3, num_workers=2),
        rejects_path=tmp_path / "b" / "rejects.parquet",
        progress=False,
    )
    assert (b.inserted, b.rejected) == (a.inserted, a.rejected)
    ta = {r["id"]: r["embedding"] for r in _table(tmp_path / "a", clip).to_arrow().to_pylist()}
    tb = {r["id"]: r["embedding"] for r in _table(tmp_path / "b", clip).to_arrow().to_pylist()}
    assert ta.keys() == tb.keys()
    assert all(np.allclose(ta[k], tb[k], atol=1e-5) for k in ta)


def test_table_of_another_model_is_refused_or_recreated(source, clip, tmp_path):
    _run(source, clip, tmp_path)
    with pytest.raises(ModelMismatchError, match="holds embeddings of model"):
        open_embedding_table(str(tmp_path / "db"), "image_embeddings", clip.dim, "other-model:1")
    with pytest.raises(ModelMismatchError, match="dim"):
        open_embedding_table(str(tmp_path / "db"), "image_embeddings", clip.dim * 2, clip.model_id)
    table, recreated = open_embedding_table(
        str(tmp_path / "db"), "image_embeddings", clip.dim, "other-model:1", on_mismatch="recreate"
    )
    assert recreated and table.count_rows() == 0


def test_index_is_built_past_the_threshold_and_searches_match_exact(source, clip, tmp_path):
    index_type = "IVF_HNSW_SQ"
    exact = _run(source, clip, tmp_path / "exact")
    assert not exact.index.indexed
    cfg = IndexConfig(threshold_rows=5, type=index_type, num_partitions=1)
    indexed = _run(source, clip, tmp_path / "indexed", index=cfg)
    assert indexed.index.indexed and indexed.index.action.startswith("created " + index_type)
    t_exact, t_indexed = _table(tmp_path / "exact", clip), _table(tmp_path / "indexed", clip)
    for row in t_exact.to_arrow().to_pylist()[:3]:
        a = search(t_exact, row["embedding"], 3, cfg)["id"].to_pylist()
        b = search(t_indexed, row["embedding"], 3, cfg)["id"].to_pylist()
        assert a[0] == b[0] == row["id"]  # refine re-ranks exactly: the query itself comes first
    rerun = _run(source, clip, tmp_path / "indexed", index=cfg)
    assert rerun.index.action == "up to date" and rerun.index.unindexed_rows == 0
