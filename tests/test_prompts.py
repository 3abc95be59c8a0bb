import collections

import pytest

from realrag_core.prompts import build_prompts, load_prompts, save_prompts, split_concepts
from realrag_core.world import World


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
    from realrag_core.config import ConfigError, parse_config

    smoke_data["prompts"] = {"split_fractions": [0.5, 0.5, 0.5]}
    with pytest.raises(ConfigError, match="prompts.split_fractions"):
        parse_config(smoke_data, tmp_path)
