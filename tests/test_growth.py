"""The growth sensor: metadata-only fingerprints, one run request per change, none while nothing changes."""

import os
import time

import dagster as dg
from PIL import Image

from pipelines.resources import RealRagConfigResource
from pipelines.sensors import GROWTH_CHAIN, source_growth
from realrag_core.config import ClassFolderSourceConfig
from realrag_core.growth import source_fingerprint
from realrag_core.sources import prepare_source


def _tick(config_file, cursor):
    context = dg.build_sensor_context(cursor=cursor, resources={"realrag": RealRagConfigResource(config_path=str(config_file))})
    return source_growth(context), context.cursor


def test_sensor_requests_the_growth_chain_once_per_change(smoke_config_file, smoke_cfg):
    prepare_source(smoke_cfg.source)
    first, cursor = _tick(smoke_config_file, None)
    assert isinstance(first, dg.RunRequest) and list(first.asset_selection) == GROWTH_CHAIN and cursor
    again, same = _tick(smoke_config_file, cursor)
    assert isinstance(again, dg.SkipReason) and same == cursor
    manifest = smoke_cfg.source.image_dir / "captions.csv"
    with manifest.open("a") as fh:  # a new image listed
        fh.write("extra.png,a red circle,red circle,filled\n")
    grown, new_cursor = _tick(smoke_config_file, cursor)
    assert isinstance(grown, dg.RunRequest) and new_cursor != cursor and grown.run_key != first.run_key


def test_class_folder_fingerprint_sees_added_and_removed_files_only(tmp_path):
    for cls in ("Tesla_Cybertruck", "Rivian_R1T"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / cls / "a.jpg")
    cfg = ClassFolderSourceConfig(root=tmp_path)
    base = source_fingerprint(cfg)
    assert source_fingerprint(cfg) == base and base["entries"] == 3
    time.sleep(0.01)
    Image.new("RGB", (8, 8)).save(tmp_path / "Rivian_R1T" / "b.jpg")
    added = source_fingerprint(cfg)
    assert added["digest"] != base["digest"]
    os.remove(tmp_path / "Rivian_R1T" / "b.jpg")
    assert source_fingerprint(cfg)["digest"] != added["digest"]
    (tmp_path / "Xiaomi_SU7").mkdir()  # a new class
    assert source_fingerprint(cfg)["entries"] == 4
