"""The shipped demo generator against the real demo world.

Always (needs only the demo npm packages, which README command 2 fetches): the shipped weights carry the key
that the demo config, its world split and its CLIP training compute, so README command 1 uses them instead
of training for half an hour.

Opt-in (REALRAG_DEMO_MODEL_TESTS=1; takes the shipped demo CLIP and judge, kept in .cache/test-demo/ under their
training keys): the reference effect on the demo weights. A prompt of novel
concept c with a database reference of another novel concept c': how often the judge names c' with the
reference versus without it (measured on the shipped weights: +0.292 [+0.18, +0.42], n=96; README)."""

import json
import os

import pytest

from realrag_core.clip.bundle import load_clip
from realrag_core.clip.demo_pretrain import (
    base_clip_records,
    build_demo_clip,
    build_judge,
    judge_records,
    training_key,
    training_key_of,
)
from realrag_core.config.base import PROJECT_ROOT
from realrag_core.config.loading import load_config
from realrag_core.data.emoji_packages import PACKAGES
from realrag_core.generators.demo.training import (
    TEXT_ENCODER_DIR,
    build_demo_generator,
    generator_key,
    reference_effect,
    text_encoder_key,
)
from realrag_core.data.sources.registry import iter_records, prepare_source
from realrag_core.data.world import compute_world

HAVE_CACHE = all((PROJECT_ROOT / ".cache" / "emoji-npm" / p.tarball).is_file() for p in PACKAGES.values())
pytestmark = [
    pytest.mark.skipif(not HAVE_CACHE, reason="demo npm packages not in .cache/emoji-npm (run scripts/setup.sh)"),
    pytest.mark.xdist_group("demo_cache"),
]  # one worker renders .cache/test-demo/source
ROOT = PROJECT_ROOT / ".cache" / "test-demo"


def _demo():
    cfg = load_config(PROJECT_ROOT / "configs" / "demo.yaml")
    cfg = cfg.model_copy(
        update={"artifacts_root": ROOT, "source": cfg.source.model_copy(update={"image_dir": ROOT / "source"})}
    )
    prepare_source(cfg.source)
    records = list(iter_records(cfg.source))
    return cfg, records, compute_world(records, cfg.world)


def test_shipped_demo_weights_match_the_demo_config():
    cfg, records, world = _demo()
    text_key = text_encoder_key(cfg, records)
    shipped = json.loads((cfg.generator.shipped_weights / "generator.json").read_text())
    assert shipped["world_hash"] == world.hash and shipped["text_key"] == text_key
    assert shipped["key"] == generator_key(cfg, world, text_key)
    assert shipped["train_concepts"] == len(world.concepts_in("known")) == cfg.world.num_known
    # its own text encoder is shipped beside it, made by its recipe on its data
    encoder = cfg.generator.shipped_weights / TEXT_ENCODER_DIR
    assert training_key_of(encoder) == text_key
    assert load_clip(encoder).model_id == shipped["text_model_id"]


def test_shipped_base_clip_and_judge_match_their_recipes():
    """The shipped base CLIP and judge carry the training keys of the demo's recipes on the demo's data, and the
    data rules hold: the CLIP never saw a database-style image of a world or selection concept, the judge never
    a reference-style one."""
    cfg, records, world = _demo()
    held = set(world.concepts) | set(world.selection)
    clip_train, judge_train = base_clip_records(cfg, world, records), judge_records(cfg, world, records)
    assert not [r for r in clip_train if r.style in cfg.world.styles.database and r.concept in held]
    assert not [r for r in clip_train if r.style == cfg.world.styles.reference and r.concept in held]
    assert not [r for r in judge_train if r.style == cfg.world.styles.reference and r.concept in held]
    assert {r.style for r in judge_train} >= set(cfg.world.styles.database)  # the judge does see the database
    for spec, seed, train in ((cfg.clip, cfg.world.seed, clip_train), (cfg.judge, cfg.judge.seed, judge_train)):
        assert training_key_of(spec.shipped_weights) == training_key(spec.architecture, spec.train, seed, train)


@pytest.mark.skipif(os.environ.get("REALRAG_DEMO_MODEL_TESTS") != "1", reason="opt-in: REALRAG_DEMO_MODEL_TESTS=1")
def test_shipped_demo_generator_carries_the_reference_concept(tmp_path):
    cfg, records, world = _demo()
    build_demo_clip(cfg, world, ROOT / "clip", tmp_path)
    build_judge(cfg, world, ROOT / "judge", tmp_path)
    gen, info = build_demo_generator(cfg, world, records, tmp_path / "gen", tmp_path)
    assert info["source"] == "shipped"
    effect = reference_effect(gen, load_clip(ROOT / "judge"), world, records, cfg)
    print(json.dumps(effect, indent=1))
    as_ref = effect["judged_as_reference_concept"]
    # without the reference the judge rarely names the other concept; with it, it must do so measurably
    assert as_ref["without_reference"]["acc"] <= 0.05
    assert effect["effect_lo"] > 0.05 and as_ref["with_reference"]["lo"] > as_ref["without_reference"]["hi"]
