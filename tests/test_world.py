import copy

import pytest

from realrag_core.config.loading import parse_config
from realrag_core.config.world import WorldConfig
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.data.sources.registry import iter_records, prepare_source
from realrag_core.data.world import compute_world, load_world, save_world


def _records(concepts, styles, missing=()):
    return [ImageRecord(f"{c}-{s}.png", c, c, s) for c in concepts for s in styles if (c, s) not in missing]


def test_splits_are_deterministic_and_follow_the_seed(smoke_cfg):
    prepare_source(smoke_cfg.source)
    a = compute_world(iter_records(smoke_cfg.source), smoke_cfg.world)
    b = compute_world(iter_records(smoke_cfg.source), smoke_cfg.world)
    assert a == b
    assert len(a.concepts_in("known")) == 9 and len(a.concepts_in("novel")) == 3
    other = compute_world(iter_records(smoke_cfg.source), smoke_cfg.world.model_copy(update={"seed": 7}))
    assert other.concept_split != a.concept_split and other.hash != a.hash


def test_concepts_missing_a_role_style_are_left_out(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["world"]["num_concepts"] = None
    cfg = parse_config(data, tmp_path)
    concepts = [f"c{i}" for i in range(8)]
    records = _records(concepts, ["outline", "filled", "shadow", "striped", "dotted"], missing={("c3", "dotted")})
    world = compute_world(records, cfg.world)
    assert "c3" not in world.concept_split and len(world.concepts) == 7
    # and the report says which and why (a class folder whose held-out draw took none of its files)
    from realrag_core.data.world import left_out_concepts

    records += _records(["c8"], [cfg.world.styles.reference])  # only held-out images
    left_out = left_out_concepts(records, cfg.world)
    assert set(left_out) == {"c3", "c8"} == {c for c in {r.concept for r in records} if c not in world.concept_split}
    assert left_out["c3"] == "no image in the style(s) dotted"
    assert all(s in left_out["c8"] for s in cfg.world.styles.database)


def test_asking_for_more_concepts_than_exist_fails(smoke_cfg):
    records = _records(["a", "b", "c"], ["outline", "filled", "shadow", "striped", "dotted"])
    with pytest.raises(ValueError, match="only 3 concepts"):
        compute_world(records, smoke_cfg.world)


def test_saved_world_round_trips_and_detects_edits(smoke_cfg, tmp_path):
    prepare_source(smoke_cfg.source)
    world = compute_world(iter_records(smoke_cfg.source), smoke_cfg.world)
    save_world(world, tmp_path / "w")
    assert load_world(tmp_path / "w") == world
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "w" / "splits.parquet").to_pydict()
    t["split"] = ["known"] * len(t["split"])
    pq.write_table(pa.table(t), tmp_path / "w" / "splits.parquet")
    with pytest.raises(ValueError, match="edited"):
        load_world(tmp_path / "w")


def test_a_pretrained_generators_novel_concepts_come_from_the_config(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["world"].update(num_concepts=None, novel_concepts=["c2", "c5"])
    cfg = parse_config(data, tmp_path)
    records = _records([f"c{i}" for i in range(8)], ["outline", "filled", "shadow", "striped", "dotted"])
    world = compute_world(records, cfg.world)
    assert world.concepts_in("novel") == ["c2", "c5"] and len(world.concepts_in("known")) == 6
    bad = cfg.world.model_copy(update={"novel_concepts": ("c2", "Tesla Cybertruck")})
    with pytest.raises(ValueError, match="not in the world: \\['Tesla Cybertruck'\\]"):
        compute_world(records, bad)
    data["world"]["num_known"] = 3
    with pytest.raises(ValueError, match="either novel_concepts or num_known"):
        parse_config(data, tmp_path)


def test_pre_training_styles_neither_filter_the_world_nor_enter_its_hash(smoke_data, tmp_path):
    """Adding an artist that only pre-trains a model (even one that draws few concepts) leaves the world's concepts,
    split and hash as they were: a shipped generator stays valid."""
    data = copy.deepcopy(smoke_data)
    data["world"]["num_concepts"] = 6
    cfg = parse_config(data, tmp_path)
    concepts = [f"c{i}" for i in range(10)]
    records = _records(concepts, ["outline", "filled", "shadow", "striped", "dotted"])
    before = compute_world(records, cfg.world)
    sparse_artist = [ImageRecord(f"{c}-new.png", c, c, "newartist") for c in concepts[:3]]
    data["world"]["styles"]["clip_pretrain"] = ["outline", "newartist"]
    data["world"]["styles"]["outside_world"] = ["filled"]
    data["world"]["styles"]["artists"] = {"someone": ["outline", "newartist"]}
    after = compute_world(records + sparse_artist, WorldConfig.model_validate(data["world"]))
    assert after.concept_split == before.concept_split and after.hash == before.hash
    # the roles that do decide the world still move its hash
    data["world"]["styles"]["reference"] = "striped"
    data["world"]["styles"]["database"] = ["filled", "shadow"]
    assert compute_world(records, WorldConfig.model_validate(data["world"])).hash != before.hash


def test_selection_concepts_lie_outside_the_world_and_leave_it_unchanged(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["world"]["num_concepts"] = 6
    records = _records(
        [f"c{i}" for i in range(12)], ["outline", "filled", "shadow", "striped", "dotted"], missing={("c11", "dotted")}
    )
    plain = compute_world(records, parse_config(data, tmp_path).world)
    data["world"]["selection_concepts"] = 3
    world = compute_world(records, parse_config(data, tmp_path).world)
    assert world.concept_split == plain.concept_split and world.hash == plain.hash
    assert len(world.selection) == 3 and not set(world.selection) & set(world.concepts)
    assert "c11" not in world.selection  # not drawn in the reference style: it could not be measured like the world
    assert compute_world(records, parse_config(data, tmp_path).world).selection == world.selection
    save_world(world, tmp_path / "w")
    assert load_world(tmp_path / "w").selection == world.selection
    data["world"]["selection_concepts"] = 6  # the 5 other eligible concepts: none would be left to pre-train on
    with pytest.raises(ValueError, match="leaves none"):
        compute_world(records, parse_config(data, tmp_path).world)
