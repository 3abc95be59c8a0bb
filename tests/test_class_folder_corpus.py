"""A hostile Stanford-Cars-style class-folder corpus (issue 19): every entry of it gets an outcome - a row, or a
reject with its reason - and no entry ends the listing or the embedding run. Also: the same picture filed under
two classes is reported, and ``embeddings.label_conflicts`` decides what the table keeps."""

import io
import os
import pathlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import realrag_core.data.sources.listing as sources
from realrag_core.evaluate.checks import label_conflicts_outcome
from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.data.sources.class_folders import ClassFolderSourceConfig
from realrag_core.data.sources.hf_dataset import HFDatasetSourceConfig
from realrag_core.config.stages import EmbeddingsConfig
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
from realrag_core.data.sources.registry import iter_records, prepare_source
from realrag_core.data.sources.synthetic import draw_concept
from realrag_core.embed.table import open_embedding_table

EMBED = "embed"
CLASSES = {"Tesla Cybertruck": "known", "Ford F150": "known", "Locked Class": "novel", "Rivian R1T": "novel"}


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def drawing(colour: str, shape: str, size: int = 32, fmt: str = "PNG") -> bytes:
    return encoded(draw_concept(colour, shape, "filled", size).convert("RGB"), fmt)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """(root, {path relative to root: expected outcome}); two entries fail by patching (tests run as root)."""
    root = tmp_path / "cars"
    tesla, ford, locked, rivian = (root / n for n in ("Tesla_Cybertruck", "Ford_F150", "Locked_Class", "Rivian_R1T"))
    for folder in (tesla, ford, locked, rivian):
        folder.mkdir(parents=True)
    shared = drawing("blue", "square", 40, "JPEG")  # one photo filed under two classes
    files = {
        "Ford_F150/x.jpg": shared,
        "Ford_F150/y.png": drawing("green", "circle"),
        "Tesla_Cybertruck/a.jpg": drawing("red", "triangle", 40, "JPEG"),
        "Tesla_Cybertruck/same_as_ford.jpg": shared,
        "Tesla_Cybertruck/scan16.png": encoded(
            Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)), "PNG"
        ),
        "Tesla_Cybertruck/float.tif": encoded(
            Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)), "TIFF"
        ),
        "Tesla_Cybertruck/UPPER.JPG": drawing("red", "circle", 36, "JPEG"),
        "Tesla_Cybertruck/notes.txt": b"shot on a phone\n",
        "Tesla_Cybertruck/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "Tesla_Cybertruck/phone.heic": b"\x00\x00\x00\x18ftypheic" + bytes(200),
        "Tesla_Cybertruck/zero.jpg": b"",
        "Tesla_Cybertruck/half.jpg": drawing("red", "square", 64, "JPEG")[:300],
        "Tesla_Cybertruck/denied.jpg": drawing("red", "circle", 40, "JPEG"),  # lstat raises (patched)
        "Tesla_Cybertruck/unreadable.jpg": drawing("red", "triangle", 44, "JPEG"),  # read raises (patched)
        "Locked_Class/inside.jpg": drawing("blue", "circle", 32, "JPEG"),  # its folder cannot be listed (patched)
        "Rivian_R1T/r.png": drawing("green", "square"),
        "README.md": b"# cars\n",
        "stray.jpg": drawing("green", "triangle", 32, "JPEG"),
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.jpg").write_bytes(drawing("blue", "triangle", 32, "JPEG"))
    os.symlink(outside / "o.jpg", tesla / "escape.jpg")  # a file link out of the corpus
    os.symlink(outside, root / "Linked_Outside")  # a class folder that is a link out of the corpus
    os.symlink(root / "Ford_F150", root / "Ford_Alias")  # a class folder linked inside the corpus: a class
    os.symlink(tesla / "gone.jpg", tesla / "dangling.jpg")
    os.symlink(tesla / "loop2.jpg", tesla / "loop1.jpg")
    os.symlink(tesla / "loop1.jpg", tesla / "loop2.jpg")
    os.symlink(root / "nowhere", root / "Dangling_Class")
    os.symlink(root / "Loop_Class", root / "Loop_Class")  # a class folder that is a loop of links
    os.mkfifo(tesla / "pipe.jpg")
    (tesla / "folder.jpg").mkdir()
    (tesla / "nested").mkdir()
    (tesla / "nested" / "deep.jpg").write_bytes(drawing("red", "square"))
    bad_name = os.fsdecode(b"caf\xe9.jpg")  # a file name that is not UTF-8 (Latin-1 from an old camera)
    (tesla / bad_name).write_bytes(drawing("red", "circle", 48, "JPEG"))

    real_lstat, real_scandir, real_read = os.lstat, os.scandir, pathlib.Path.read_bytes

    def named(path, suffix):  # os.lstat and os.scandir are patched for everyone: file descriptors pass through
        return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(suffix)

    def lstat(path, *a, **kw):
        if named(path, "denied.jpg"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_lstat(path, *a, **kw)

    def scandir(path="."):
        if named(path, "Locked_Class"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def read_bytes(self):
        if self.name == "unreadable.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(sources.os, "lstat", lstat)
    monkeypatch.setattr(sources.os, "scandir", scandir)
    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)

    expected = {
        "Ford_F150/x.jpg": EMBED,
        "Ford_F150/y.png": EMBED,
        "Ford_Alias/x.jpg": EMBED,  # the linked class: a class of its own name ("Ford Alias")
        "Ford_Alias/y.png": EMBED,
        "Tesla_Cybertruck/a.jpg": EMBED,
        "Tesla_Cybertruck/same_as_ford.jpg": EMBED,  # kept by default, and reported as a label conflict
        "Tesla_Cybertruck/scan16.png": EMBED,
        "Tesla_Cybertruck/float.tif": EMBED,
        "Tesla_Cybertruck/UPPER.JPG": EMBED,
        "Rivian_R1T/r.png": EMBED,
        "Tesla_Cybertruck/notes.txt": "not an image file: suffix '.txt'",
        "Tesla_Cybertruck/.DS_Store": "not an image file: suffix ''",
        "Tesla_Cybertruck/phone.heic": "a format Pillow cannot read",
        "Tesla_Cybertruck/zero.jpg": "empty file",
        "Tesla_Cybertruck/half.jpg": "unreadable header: OSError: Truncated File Read",  # cut inside its header
        "Tesla_Cybertruck/denied.jpg": "permission denied",
        "Tesla_Cybertruck/unreadable.jpg": "permission denied",
        "Locked_Class": "class folder cannot be listed: permission denied",
        "README.md": "not a class folder",
        "stray.jpg": "an image outside any class folder",
        "Tesla_Cybertruck/escape.jpg": "path leads outside the source folder",
        "Linked_Outside": "path leads outside the source folder",
        "Tesla_Cybertruck/dangling.jpg": "link that cannot be resolved: its target does not exist",
        "Tesla_Cybertruck/loop1.jpg": "link that cannot be resolved: a loop of links",
        "Tesla_Cybertruck/loop2.jpg": "link that cannot be resolved: a loop of links",
        "Dangling_Class": "link that cannot be resolved: its target does not exist",
        "Loop_Class": "link that cannot be resolved: a loop of links",
        "Tesla_Cybertruck/pipe.jpg": "not a regular file: a named pipe",
        "Tesla_Cybertruck/folder.jpg": "a folder named like an image",
        "Tesla_Cybertruck/nested": "a folder inside a class folder",
        # kept readable in the rejects file: the byte that is not UTF-8 becomes U+FFFD
        "Tesla_Cybertruck/caf\ufffd.jpg": "file name is not valid UTF-8",
    }
    return root, expected


@pytest.fixture
def clip(smoke_cfg, tmp_path):
    folder = tmp_path / "clip"
    model, *_ = create_untrained(folder, smoke_cfg.clip.architecture, seed=0)
    save_clip(model, folder)
    return load_clip(folder)


def embed(root, clip, tmp_path, db="db", **embeddings):
    source = ClassFolderSourceConfig(root=root)
    scope = Scope(frozenset({"photo"}), {**CLASSES, "Ford Alias": "known"})
    rejects = tmp_path / db / "rejects.parquet"
    cfg = EmbeddingsConfig(batch_size=3, num_workers=0, **embeddings)
    report = embed_source(source, scope, clip, uri=str(tmp_path / db), cfg=cfg, rejects_path=rejects, progress=False)
    table, _ = open_embedding_table(str(tmp_path / db), "image_embeddings", clip.dim, clip.model_id)
    return report, table.to_arrow().to_pylist(), pq.read_table(rejects).to_pylist()


def test_every_entry_of_a_hostile_class_folder_corpus_gets_an_outcome(corpus, clip, tmp_path):
    root, expected = corpus
    report, rows, rejects = embed(root, clip, tmp_path)
    embedded = {os.path.relpath(r["path"], root) for r in rows}
    reasons = {os.path.relpath(r["path"], root): r["reason"] for r in rejects}
    for name, outcome in expected.items():
        if outcome == EMBED:
            assert name in embedded, (name, reasons.get(name))
        else:
            assert name not in embedded, name
            assert outcome in reasons.get(name, ""), (name, reasons.get(name))
    # nothing else was embedded or rejected: every entry has exactly one outcome
    assert embedded | set(reasons) == set(expected) and not embedded & set(reasons)
    assert len(rows) == report.rows == sum(o == EMBED for o in expected.values())
    assert report.rejected == len(rejects) == sum(o != EMBED for o in expected.values())
    assert report.rejects_by_reason["link that cannot be resolved"] == 5
    assert report.rejects_by_reason["permission denied"] == 2
    assert report.rejects_by_reason["not an image file"] == 2
    concepts = {os.path.relpath(r["path"], root): r["concept"] for r in rows}
    assert concepts["Tesla_Cybertruck/a.jpg"] == "Tesla Cybertruck" and concepts["Ford_Alias/x.jpg"] == "Ford Alias"
    # the growth sensor's fingerprint reads the same tree without raising, and sees the same class folders
    from realrag_core.data.sources.registry import source_fingerprint

    assert source_fingerprint(ClassFolderSourceConfig(root=root))["entries"] == 1 + 5  # root + 5 class folders
    # the listing alone (what the world and the pre-training read) lists the images and never raises
    listed = {os.path.relpath(r.path, root) for r in iter_records(ClassFolderSourceConfig(root=root))}
    assert listed == {n for n, o in expected.items() if o == EMBED} | {
        "Tesla_Cybertruck/zero.jpg",
        "Tesla_Cybertruck/half.jpg",
        "Tesla_Cybertruck/phone.heic",
        "Tesla_Cybertruck/unreadable.jpg",  # listed; reading it is what fails
    }


def test_a_missing_root_is_a_clear_error_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        ClassFolderSourceConfig(root=tmp_path / "no_such_folder")


def test_the_same_picture_under_two_classes_is_reported_and_the_setting_decides(corpus, clip, tmp_path):
    """Two pictures are filed twice: x.jpg under Ford F150 and Tesla Cybertruck (and the linked Ford_Alias), and
    y.png under Ford F150 and the linked Ford_Alias."""
    root, _ = corpus
    x = {"Ford_Alias/x.jpg", "Ford_F150/x.jpg", "Tesla_Cybertruck/same_as_ford.jpg"}
    y = {"Ford_Alias/y.png", "Ford_F150/y.png"}

    def paths(rows):
        return {os.path.relpath(r["path"], root) for r in rows} & (x | y)

    report, rows, _ = embed(root, clip, tmp_path, "keep")
    assert report.label_conflicts == 2 and report.label_conflict_rows_dropped == 0
    assert paths(rows) == x | y  # the default keeps every row: existing tables do not change
    conflicts = pq.read_table(report.label_conflicts_path).to_pylist()
    assert {os.path.relpath(c["path"], root) for c in conflicts} == x | y
    assert {c["action"] for c in conflicts} == {"kept"}
    by_path = {os.path.relpath(c["path"], root): c["concepts"] for c in conflicts}
    assert by_path["Ford_F150/x.jpg"] == ["Ford Alias", "Ford F150", "Tesla Cybertruck"]
    assert by_path["Ford_F150/y.png"] == ["Ford Alias", "Ford F150"]
    outcome = label_conflicts_outcome({"label_conflicts": report.label_conflicts})
    assert not outcome.passed and outcome.warning_only and outcome.numbers["label_conflicts"] == 2

    report, rows, rejects = embed(root, clip, tmp_path, "first", label_conflicts="first_wins")
    assert paths(rows) == {"Ford_Alias/x.jpg", "Ford_Alias/y.png"}  # listed first (classes in name order)
    assert report.label_conflict_rows_dropped == 3 and report.rows == len(rows)
    dropped = {os.path.relpath(r["path"], root): r["reason"] for r in rejects if "label conflict" in r["reason"]}
    assert set(dropped) == {"Ford_F150/x.jpg", "Ford_F150/y.png", "Tesla_Cybertruck/same_as_ford.jpg"}
    assert "also listed as Ford Alias, Ford F150" in dropped["Tesla_Cybertruck/same_as_ford.jpg"]
    again, rows_again, _ = embed(root, clip, tmp_path, "first", label_conflicts="first_wins")
    assert again.inserted == 0 and again.removed == 0  # a rerun changes nothing
    assert sorted(r["id"] for r in rows_again) == sorted(r["id"] for r in rows)

    report, rows, _ = embed(root, clip, tmp_path, "drop", label_conflicts="drop_both")
    assert paths(rows) == set() and report.label_conflict_rows_dropped == 5
    # switching a table that kept them to drop_both removes those rows, and only those
    before = embed(root, clip, tmp_path, "switch")[1]
    report, rows, _ = embed(root, clip, tmp_path, "switch", label_conflicts="drop_both")
    assert paths(rows) == set() and report.removed == 0 and len(rows) == len(before) - 5
    assert label_conflicts_outcome({"label_conflicts": 0}).passed


def test_a_hugging_face_row_that_cannot_be_exported_is_a_reject_and_16_bit_rows_are_scaled(tmp_path):
    import datasets

    good = Image.new("RGB", (12, 12), "red")
    grey16 = Image.fromarray(np.full((12, 12), 40000, dtype=np.uint16))  # 40000 // 256 = 156
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    data = datasets.Dataset.from_dict({"image": [good, grey16], "label": [0, 1]}, features=features)
    (tmp_path / "ds" / "data").mkdir(parents=True)
    data.to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    table = pq.read_table(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet").to_pylist()
    table.append({"image": {"bytes": b"not an image", "path": None}, "label": 0})  # a damaged row
    import pyarrow as pa

    pq.write_table(
        pa.Table.from_pylist(table, schema=pq.read_schema(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")),
        tmp_path / "ds" / "data" / "train-00000-of-00001.parquet",
    )
    cfg = HFDatasetSourceConfig(name=str(tmp_path / "ds"), image_dir=tmp_path / "export")
    summary = prepare_source(cfg, progress=False)
    assert summary["images"] == 2 and summary["skipped"] == 1
    records = list(iter_records(cfg))
    assert Image.open(records[1].path).getpixel((0, 0)) == (156, 156, 156)  # scaled, not clipped to white
    errors = [r for r in iter_records(cfg, with_errors=True) if r.error]
    assert len(errors) == 1 and "row 2" in str(errors[0].path) and "could not be exported" in errors[0].error


def test_realrag_rejects_tells_the_user_what_was_left_out_and_why(corpus, clip, tmp_path, capsys):
    from realrag_core.cli import main
    from realrag_core.embed.embedding import rejects_summary

    root, expected = corpus
    report, _, _ = embed(root, clip, tmp_path, "db")
    text = rejects_summary(tmp_path / "db" / "rejects.parquet", examples=1)
    first = text.splitlines()[0]
    assert first.startswith(f"{report.rejected} entries rejected by image_embeddings")
    for kind, n in report.rejects_by_reason.items():
        assert f"{n:6d}  {kind}" in text
    links = report.rejects_by_reason["link that cannot be resolved"]
    assert f"... and {links - 1} more" in text  # one example shown per kind, the rest counted
    assert "2 picture(s) listed under two or more concepts" in text
    with pytest.raises(FileNotFoundError, match="materialize image_embeddings first"):
        rejects_summary(tmp_path / "nowhere" / "rejects.parquet")
    # the command: a profile without a run says what to run, exit status 2
    smoke = pathlib.Path(__file__).parent.parent / "configs" / "smoke.yaml"
    (tmp_path / "p.yaml").write_text(f"extends: {smoke}\nartifacts_root: {tmp_path / 'empty'}\n")
    assert main(["rejects", "--config", str(tmp_path / "p.yaml")]) == 2
    assert "materialize image_embeddings first" in capsys.readouterr().err


def test_the_source_preview_grid_skips_what_it_cannot_decode(corpus):
    """image_source's preview reads the same hostile folder: a decompression bomb, a truncated file or a 16-bit
    scan never ends it."""
    from realrag_core.data.sources.registry import sample_for_preview

    root, _ = corpus
    from test_bad_input import bomb_header  # tests/ is on sys.path (pytest rootdir-relative imports)

    (root / "Rivian_R1T" / "bomb.png").write_bytes(bomb_header(100_000, 100_000))
    images, labels, columns = sample_for_preview(ClassFolderSourceConfig(root=root), per_style=20)
    assert images and len(images) == len(labels) and all(i.mode == "RGB" for i in images)
    assert columns >= 1


def _names(folder: str, held: bool, stems: list[str], suffix: str) -> list[str]:
    """A file name per stem that the listing's stable draw puts in the held-out share (``held``) or not."""
    out = []
    for stem in stems:
        i = 0
        while sources.held_out(f"{folder}/{stem}{i}{suffix}", 0.5) != held:
            i += 1
        out.append(f"{stem}{i}{suffix}")
    return out


def test_held_out_reference_images_are_checked_like_the_database_and_listed_for_fid_and_the_study(
    clip, tmp_path, monkeypatch
):
    """A class folder's held-out share (the real images of FID and of the human study) is read and decoded by
    stage 1 as the database is: a broken file there is a reject, the same picture as a database image of
    another class is a label conflict, and what decodes is listed for the later stages, never embedded."""
    from realrag_core.embed.embedding import reference_listing, rejects_summary
    from realrag_core.evaluate.reference_set import fid_reference_set
    import realrag_core.embed.reader as reader

    root = tmp_path / "cars"
    tesla, ford = root / "Tesla_Cybertruck", root / "Ford_F150"
    for folder in (tesla, ford):
        folder.mkdir(parents=True)
    shared = drawing("blue", "square", 40, "JPEG")
    t_db, t_good, t_fake, t_empty, t_grey, t_shared = _names("Tesla_Cybertruck", False, ["db"], ".png") + _names(
        "Tesla_Cybertruck", True, ["good", "fake", "empty", "grey", "shared"], ".png"
    )
    f_shared, f_other, f_ref = _names("Ford_F150", False, ["shared", "other"], ".jpg") + _names(
        "Ford_F150", True, ["ref"], ".png"
    )
    files = {
        tesla / t_db: drawing("red", "triangle"),
        tesla / t_good: drawing("red", "circle"),
        tesla / t_fake: b"not a picture at all",
        tesla / t_empty: b"",
        tesla / t_grey: encoded(Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)), "PNG"),
        tesla / t_shared: shared,
        ford / f_shared: shared,
        ford / f_other: drawing("green", "circle", 32, "JPEG"),
        ford / f_ref: drawing("green", "square"),
    }
    for path, data in files.items():
        path.write_bytes(data)
    source = ClassFolderSourceConfig(root=root, held_out_fraction=0.5, held_out_style="held_out")
    scope = Scope(frozenset({"photo"}), {"Tesla Cybertruck": "known", "Ford F150": "novel"}, frozenset({"held_out"}))
    decoded = []
    real_decode = reader.decode_image
    monkeypatch.setattr(reader, "decode_image", lambda data, limits: decoded.append(1) or real_decode(data, limits))

    def run(db, **embeddings):
        rejects = tmp_path / db / "rejects" / "image_embeddings.parquet"
        cfg = EmbeddingsConfig(batch_size=3, num_workers=0, **embeddings)
        report = embed_source(
            source, scope, clip, uri=str(tmp_path / db), cfg=cfg, rejects_path=rejects, progress=False
        )
        table, _ = open_embedding_table(str(tmp_path / db), "image_embeddings", clip.dim, clip.model_id)
        rows = {pathlib.Path(r["path"]) for r in table.to_arrow().to_pylist()}
        return report, rows, pq.read_table(rejects).to_pylist(), rejects.parent

    report, rows, rejects, folder = run("keep")
    assert rows == {tesla / t_db, ford / f_shared, ford / f_other}  # the held-out share is never embedded
    by_path = {pathlib.Path(r["path"]): r for r in rejects}
    assert set(by_path) == {tesla / t_fake, tesla / t_empty}
    assert "not an image" in by_path[tesla / t_fake]["reason"] and "empty file" in by_path[tesla / t_empty]["reason"]
    assert {r["role"] for r in rejects} == {"reference"} and {r["style"] for r in rejects} == {"held_out"}
    listed = reference_listing(folder)
    assert [r.path for r in listed] == [ford / f_ref, tesla / t_good, tesla / t_grey, tesla / t_shared]  # source order
    assert {r.concept for r in listed} == {"Tesla Cybertruck", "Ford F150"} and {r.style for r in listed} == {
        "held_out"
    }
    assert report.reference_checked == 4 and report.rejected == 2
    conflicts = pq.read_table(report.label_conflicts_path).to_pylist()
    assert report.label_conflicts == 1
    assert {pathlib.Path(c["path"]) for c in conflicts} == {tesla / t_shared, ford / f_shared}
    assert {tuple(c["concepts"]) for c in conflicts} == {("Ford F150", "Tesla Cybertruck")}
    summary = rejects_summary(folder / "image_embeddings.parquet")
    assert "2 of them reference images, held out of the database" in summary
    assert f"{tesla / t_fake}: not an image" in summary and summary.count("[held out]") == 2  # each one marked
    # FID's reference set reads the listing: nothing undecodable left in it; a broken record is named, not counted
    by_split = {"known": {"Tesla Cybertruck"}, "novel": {"Ford F150"}}
    ref, ref_report = fid_reference_set(listed, "held_out", by_split)
    assert ref_report["undecodable"] == 0 and ref_report["kept"] == {"known": 3, "novel": 1}
    broken = [*listed, sources.ImageRecord(tesla / t_fake, "", "Tesla Cybertruck", "held_out")]
    assert fid_reference_set(broken, "held_out", by_split)[1]["undecodable_paths"] == [str(tesla / t_fake)]

    decoded.clear()
    again, _, rejects_again, _ = run("keep")  # a rerun reads the bytes again but decodes only what failed before
    assert len(decoded) == 2 and again.reference_checked == 4 and len(rejects_again) == 2

    report, rows, rejects, folder = run("drop", label_conflicts="drop_both")
    assert ford / f_shared not in rows and tesla / t_shared not in {r.path for r in reference_listing(folder)}
    dropped = [r for r in rejects if "label conflict" in r["reason"]]
    assert {(pathlib.Path(r["path"]), r["role"]) for r in dropped} == {
        (tesla / t_shared, "reference"),
        (ford / f_shared, "database"),
    }
    assert report.reference_checked == 3
