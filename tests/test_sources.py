import json

import pytest
from PIL import Image

from realrag_core.config import ClassFolderSourceConfig, CaptionFileSourceConfig
from realrag_core.sources import ManifestError, iter_caption_file, iter_records, prepare_source


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
    assert records[0].concept == "a tesla cybertruck" and records[0].style == "default"
    assert records[1].caption == ""  # the broken line becomes a record with no caption: a reject, not a crash


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
    assert [r.caption for r in records] == ["a photo of a Ford F-150, a type of car",
                                            "a photo of a Tesla Cybertruck, a type of car"]
    assert prepare_source(cfg)["images"] == 2


def test_user_folder_source_prepares(user_folder):
    cfg = CaptionFileSourceConfig(image_dir=user_folder, captions=user_folder / "captions.csv")
    summary = prepare_source(cfg)
    assert summary["images"] == len(list(iter_records(cfg))) > 8
