"""The growth sensor: metadata-only fingerprints, one run request per change, none while nothing changes."""

import os
import time

import dagster as dg
import pytest
from PIL import Image

from assets.resources import RealRagConfigResource
from pipelines.sensors import GROWTH_CHAIN, source_growth
from realrag_core.data.sources.class_folders import ClassFolderSourceConfig
from realrag_core.data.sources.registry import source_fingerprint
from realrag_core.data.sources.registry import prepare_source


def _tick(config_file, cursor):
    with dg.build_sensor_context(
        cursor=cursor, resources={"realrag": RealRagConfigResource(config_path=str(config_file))}
    ) as context:
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


@pytest.mark.slow
def test_new_images_reach_a_new_retriever_through_the_sensor_without_a_full_rebuild(smoke_config_file, smoke_cfg):
    """Issue 5's growth path on one Dagster instance: after a full run, new images of known concepts are dropped
    into the source; the sensor's run request embeds only them and re-mines incrementally; the retrain job's
    retrievers record the new table version and negatives. The generator and its images are not rebuilt."""
    import csv

    from PIL import ImageOps

    from assets.checks import ALL_CHECKS
    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from pipelines.sensors import retrain_job
    from realrag_core.data.captions import MANIFEST_NAME
    from realrag_core.data.sources.synthetic import draw_concept

    instance = dg.DagsterInstance.ephemeral()
    resources = {"realrag": RealRagConfigResource(config_path=str(smoke_config_file))}

    def run(selection):
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS], selection=selection, instance=instance, resources=resources, tags=ALL_SHARDS
        )
        assert result.success
        return {
            e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()
        }

    first = run(None)
    _, cursor = _tick(smoke_config_file, None)
    source = smoke_cfg.source.image_dir
    with (source / MANIFEST_NAME).open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    added = []
    for row in rows[:3]:  # mirrored drawings of concepts the database holds: new content, new ids
        colour, shape = row["concept"].split(" ", 1)
        rel = f"{row['style']}/{colour}-{shape}-mirrored.png"
        ImageOps.mirror(draw_concept(colour, shape, row["style"], smoke_cfg.source.image_size).rotate(90)).save(
            source / rel
        )
        added.append({**row, "path": rel})
    with (source / MANIFEST_NAME).open("a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerows(added)
    request, _ = _tick(smoke_config_file, cursor)
    assert isinstance(request, dg.RunRequest)
    grown = run(request.asset_selection)
    assert set(grown) == {"image_embeddings", "reflective_negatives"}
    in_scope = [r for r in added if r["style"] in smoke_cfg.world.styles.database]
    assert grown["image_embeddings"]["inserted"] == len(in_scope) > 0
    negatives = grown["reflective_negatives"]
    assert negatives["mining/mode"] == "incremental" and negatives["mining/added_rows"] == len(in_scope)
    assert negatives["table_version"] > first["reflective_negatives"]["table_version"]
    assert negatives["negatives_version"] != first["reflective_negatives"]["negatives_version"]
    retrained = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], selection=retrain_job.selection, instance=instance, resources=resources
    )
    assert retrained.success
    meta = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in retrained.get_asset_materialization_events()
    }
    assert set(meta) == {"retriever", "contrastive_retriever"}
    assert meta["retriever"]["table_version"] == negatives["table_version"]
    assert meta["retriever"]["negatives_version"] == negatives["negatives_version"]
    assert meta["contrastive_retriever"]["table_version"] == negatives["table_version"]
    # nothing upstream of the negatives was rebuilt: one materialization each, from the first run
    for key in ("generator", "generated_images", "clip_backbone"):
        records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        assert len({r.run_id for r in records}) == 1, key
