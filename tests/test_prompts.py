import collections

import pytest

from realrag_core.data.prompts import build_prompts, load_prompts, save_prompts, split_concepts
from realrag_core.data.world import World


def _world(n_known=20, n_novel=8):
    split = {f"k{i}": "known" for i in range(n_known)} | {f"n{i}": "novel" for i in range(n_novel)}
    return World(split, {}, 0, "h")


def test_concept_split_is_stratified_deterministic_and_disjoint():
    world = _world()
    a = split_concepts(world, (0.5, 0.2, 0.3), seed=0)
    assert a == split_concepts(world, (0.5, 0.2, 0.3), seed=0)
    assert a != split_concepts(world, (0.5, 0.2, 0.3), seed=1)
    assert set(a) == set(world.concept_split)
    counts = collections.Counter((world.concept_split[c], part) for c, part in a.items())
    for gsplit in ("known", "novel"):
        for part in ("train", "val", "eval"):
            assert counts[(gsplit, part)] >= 1, (gsplit, part)
    assert counts[("known", "train")] == 10 and counts[("known", "eval")] == 6


def test_prompts_carry_both_splits_and_round_trip(tmp_path):
    world = _world(6, 3)
    prompts = build_prompts(world, ("a {concept}", "a photo of a {concept}"), (0.5, 0.2, 0.3), 0)
    assert len(prompts) == 18 and len({p.prompt_id for p in prompts}) == 18
    by_concept = collections.defaultdict(set)
    for p in prompts:
        by_concept[p.concept].add(p.retriever_split)
        assert p.generator_split == world.concept_split[p.concept]
    assert all(len(parts) == 1 for parts in by_concept.values())  # a concept's prompts stay in one part
    save_prompts(prompts, tmp_path)
    assert load_prompts(tmp_path) == prompts


def test_bad_fractions_are_a_config_error(smoke_data, tmp_path):
    from realrag_core.config.base import ConfigError
    from realrag_core.config.loading import parse_config

    smoke_data["prompts"] = {"split_fractions": [0.5, 0.5, 0.5]}
    with pytest.raises(ConfigError, match="prompts.split_fractions"):
        parse_config(smoke_data, tmp_path)


SEEN = {
    "train": ("a {concept}", "a drawing of a {concept}"),
    "val": ("a picture of a {concept}",),
    "eval": ("an image of a {concept}",),
}


def test_seen_concepts_prompts_split_by_template_and_every_concept_trains(tmp_path):
    world = _world(6, 3)
    both = build_prompts(
        world, ("a {concept}",), (0.5, 0.2, 0.3), 0, protocols=("unseen_concepts", "seen_concepts"), seen_templates=SEEN
    )
    unseen = [p for p in both if p.protocol == "unseen_concepts"]
    seen = [p for p in both if p.protocol == "seen_concepts"]
    assert unseen == build_prompts(world, ("a {concept}",), (0.5, 0.2, 0.3), 0)  # the other protocol is untouched
    assert len(seen) == 9 * 4 and len({p.prompt_id for p in both}) == len(both)  # "a k0" twice: two prompts, two ids
    for split, templates in SEEN.items():
        part = [p for p in seen if p.retriever_split == split]
        assert {p.concept for p in part} == set(world.concept_split)  # every concept in every part
        assert {p.template for p in part} == set(templates)
    assert {p.generator_split for p in seen if p.concept.startswith("n")} == {"novel"}
    save_prompts(both, tmp_path)
    assert load_prompts(tmp_path) == both


def test_seen_concepts_can_evaluate_on_the_unseen_protocols_evaluation_concepts():
    """eval_concepts unseen_eval: seen_concepts' evaluation prompts are those of the concepts unseen_concepts
    evaluates on (both protocols scored on the same concepts); training and validation keep every concept."""
    world = _world(10, 6)
    args = (world, ("a {concept}",), (0.5, 0.2, 0.3), 0)
    kw = {"protocols": ("unseen_concepts", "seen_concepts"), "seen_templates": SEEN}
    full, narrow = build_prompts(*args, **kw), build_prompts(*args, **kw, seen_eval_concepts="unseen_eval")
    unseen_eval = {p.concept for p in full if p.protocol == "unseen_concepts" and p.retriever_split == "eval"}
    assert 0 < len(unseen_eval) < len(world.concept_split)
    seen_eval = {p.concept for p in narrow if p.protocol == "seen_concepts" and p.retriever_split == "eval"}
    assert seen_eval == unseen_eval
    assert [p for p in narrow if p.retriever_split != "eval"] == [p for p in full if p.retriever_split != "eval"]
    seen_only = build_prompts(
        world,
        ("a {concept}",),
        (0.5, 0.2, 0.3),
        0,
        protocols=("seen_concepts",),
        seen_templates=SEEN,
        seen_eval_concepts="unseen_eval",
    )
    assert {p.concept for p in seen_only if p.retriever_split == "eval"} == unseen_eval
    with pytest.raises(ValueError, match="seen_eval_concepts"):
        build_prompts(*args, **kw, seen_eval_concepts="some")


def test_a_prompts_file_without_a_protocol_column_reads_as_unseen_concepts(tmp_path):
    import pyarrow.parquet as pq

    old = build_prompts(_world(3, 3), ("a {concept}",), (0.5, 0.2, 0.3), 0)
    save_prompts(old, tmp_path)
    table = pq.read_table(tmp_path / "prompts.parquet").drop_columns(["protocol"])
    pq.write_table(table, tmp_path / "prompts.parquet")
    assert load_prompts(tmp_path) == old and {p.protocol for p in load_prompts(tmp_path)} == {"unseen_concepts"}


@pytest.mark.parametrize(
    "seen,match",
    [
        ({"val_templates": ["a {concept}"]}, "both a train and a val template"),
        ({"eval_templates": ["a picture of a {concept}"]}, "both a val and a eval template"),
        ({"train_templates": []}, "train_templates: at least one"),
    ],
)
def test_seen_concepts_templates_must_be_disjoint(smoke_data, tmp_path, seen, match):
    from realrag_core.config.base import ConfigError
    from realrag_core.config.loading import parse_config

    smoke_data["prompts"] = {"protocols": ["unseen_concepts", "seen_concepts"], "seen_concepts": seen}
    with pytest.raises(ConfigError, match=match):
        parse_config(smoke_data, tmp_path)
    smoke_data["prompts"] = {"protocols": ["seen_concepts", "seen_concepts"]}
    with pytest.raises(ConfigError, match="each once"):
        parse_config(smoke_data, tmp_path)


def test_one_shared_class_name_template_gives_one_prompt_per_split(smoke_data, tmp_path):
    """The paper's single class-name prompt: allowed only when asked for, and still three distinct prompts."""
    from realrag_core.config.loading import parse_config

    one = ("a photo of a {concept}",)
    prompts = build_prompts(
        _world(2, 2),
        one,
        (0.5, 0.2, 0.3),
        0,
        protocols=("seen_concepts",),
        seen_templates={"train": one, "val": one, "eval": one},
    )
    assert len(prompts) == 12 and len({p.prompt_id for p in prompts}) == 12 and len({p.prompt for p in prompts}) == 4
    smoke_data["prompts"] = {
        "protocols": ["seen_concepts"],
        "seen_concepts": {
            "train_templates": list(one),
            "val_templates": list(one),
            "eval_templates": list(one),
            "shared_templates": True,
        },
    }
    assert parse_config(smoke_data, tmp_path).prompts.seen_concepts.shared_templates
