import json

import pytest
from PIL import Image

from realrag_core.data.sources.caption_file import CaptionFileSourceConfig
from realrag_core.data.sources.class_folders import ClassFolderSourceConfig
from realrag_core.data.sources.listing import ManifestError, iter_caption_file
from realrag_core.data.sources.registry import iter_records, prepare_source


def test_caption_csv_lists_records_lazily(user_folder):
    records = iter_caption_file(user_folder, user_folder / "captions.csv")
    first = next(records)
    assert first.path == user_folder / "filled-red-circle.png" and first.caption == "red circle"
    assert first.style == "filled" and first.concept == "red circle"


def test_caption_jsonl_with_defaults_and_bad_lines(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    lines = [json.dumps({"path": "a.png", "caption": "a tesla cybertruck"}), "{broken", ""]
    (tmp_path / "c.jsonl").write_text("\n".join(lines))
    records = list(iter_caption_file(tmp_path, tmp_path / "c.jsonl"))
    assert len(records) == 1 and records[0].concept == "a tesla cybertruck" and records[0].style == "default"
    # the embedding stage's listing keeps the broken line, with its reason: a reject, not a crash
    listed = list(iter_caption_file(tmp_path, tmp_path / "c.jsonl", with_errors=True))
    assert [r.error for r in listed] == [None, "invalid JSON line"]


def test_csv_without_required_columns_is_a_clear_error(tmp_path):
    (tmp_path / "c.csv").write_text("file,text\na.png,hi\n")
    with pytest.raises(ManifestError, match="missing column"):
        list(iter_caption_file(tmp_path, tmp_path / "c.csv"))


def test_class_folders_use_the_template(tmp_path):
    for cls in ("Tesla_Cybertruck", "Ford F-150"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (16, 16)).save(tmp_path / cls / "1.jpg")
        (tmp_path / cls / "notes.txt").write_text("ignored")
    cfg = ClassFolderSourceConfig(root=tmp_path, caption_template="a photo of a {concept}, a type of car")
    records = list(iter_records(cfg))
    assert [r.caption for r in records] == [
        "a photo of a Ford F-150, a type of car",
        "a photo of a Tesla Cybertruck, a type of car",
    ]
    assert prepare_source(cfg)["images"] == 2


def test_user_folder_source_prepares(user_folder):
    cfg = CaptionFileSourceConfig(image_dir=user_folder, captions=user_folder / "captions.csv")
    summary = prepare_source(cfg)
    assert summary["images"] == len(list(iter_records(cfg))) > 8


def test_class_folders_hold_out_a_stable_share_for_the_fid_reference_set(tmp_path):
    for cls in ("Tesla_Cybertruck", "Rivian_R1T"):
        (tmp_path / cls).mkdir()
        for i in range(40):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{i:03d}.jpg")
    cfg = ClassFolderSourceConfig(root=tmp_path, held_out_fraction=0.25, held_out_style="reference")
    before = {r.path.name + r.concept: r.style for r in iter_records(cfg)}
    share = sum(s == "reference" for s in before.values()) / len(before)
    assert 0.1 < share < 0.4 and set(before.values()) == {"photo", "reference"}
    for i in range(40, 60):  # the database grows: no old image changes side
        Image.new("RGB", (8, 8)).save(tmp_path / "Tesla_Cybertruck" / f"{i:03d}.jpg")
    after = {r.path.name + r.concept: r.style for r in iter_records(cfg)}
    assert {k: after[k] for k in before} == before and len(after) == 100
    assert {r.style for r in iter_records(cfg.model_copy(update={"held_out_fraction": 0.0}))} == {"photo"}
    with pytest.raises(ValueError, match="held_out_style must differ"):
        ClassFolderSourceConfig(root=tmp_path, held_out_fraction=0.1, held_out_style="photo")


def test_a_hugging_face_dataset_exports_once_through_load_dataset(tmp_path):
    """A local parquet dataset goes through the same datasets.load_dataset call a hub id does."""
    import datasets

    from realrag_core.data.sources.hf_dataset import HFDatasetSourceConfig

    images = [Image.new("RGB", (12, 12), c) for c in ("red", "blue", "green", "red")]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["Tesla Cybertruck", "Rivian R1T", "Ford F-150"]),
        }
    )
    data = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2, 0]}, features=features)
    (tmp_path / "ds" / "data").mkdir(parents=True)
    data.to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    cfg = HFDatasetSourceConfig(
        name=str(tmp_path / "ds"),
        image_dir=tmp_path / "export",
        caption_template="a photo of a {concept}, a type of car",
    )
    first = prepare_source(cfg, progress=False)
    assert first["rebuilt"] and first["images"] == 4 and first["concepts"] == 3
    records = list(iter_records(cfg))
    assert [r.concept for r in records] == ["Tesla Cybertruck", "Rivian R1T", "Ford F-150", "Tesla Cybertruck"]
    assert records[1].caption == "a photo of a Rivian R1T, a type of car"
    assert Image.open(records[2].path).getpixel((0, 0)) == (0, 128, 0)
    assert prepare_source(cfg, progress=False)["rebuilt"] is False  # same settings: the export is reused
    with pytest.raises(ValueError, match=r"no column\(s\) \['caption'\]"):
        prepare_source(
            cfg.model_copy(update={"caption_column": "caption", "image_dir": tmp_path / "e2"}), progress=False
        )
    with pytest.raises(ValueError, match="label_column or caption_column"):
        HFDatasetSourceConfig(name="x", image_dir=tmp_path, label_column=None)
