"""The shipped demo generator on the real demo world: its weights match the demo config's split, and a
reference image moves the judge's prediction to the reference's concept at a measured rate.

Needs the demo npm packages (README command 2 fetches them). The demo CLIP and the judge are trained with
the demo config once (about 7 minutes on 2 cores) and kept in .cache/test-demo/ under their training key."""

import json

import pytest

from realrag_core.clip_backbone import load_clip
from realrag_core.clip_pretrain import build_demo_clip, build_judge, training_key_of
from realrag_core.config import PROJECT_ROOT, load_config
from realrag_core.demo_world import PACKAGES
from realrag_core.generators.demo_training import build_demo_generator, reference_effect
from realrag_core.sources import iter_records, prepare_source
from realrag_core.world import compute_world

HAVE_CACHE = all((PROJECT_ROOT / ".cache" / "emoji-npm" / p.tarball).is_file() for p in PACKAGES.values())
pytestmark = pytest.mark.skipif(not HAVE_CACHE, reason="demo npm packages not in .cache/emoji-npm (run scripts/setup.sh)")


def test_shipped_demo_generator_carries_the_reference_concept(tmp_path):
    cfg = load_config(PROJECT_ROOT / "configs" / "demo.yaml")
    root = PROJECT_ROOT / ".cache" / "test-demo"
    cfg = cfg.model_copy(update={"artifacts_root": root,
                                 "source": cfg.source.model_copy(update={"image_dir": root / "source"})})  # fmt: skip
    prepare_source(cfg.source)
    records = list(iter_records(cfg.source))
    world = compute_world(records, cfg.world)
    build_demo_clip(cfg, world, root / "clip", tmp_path)
    build_judge(cfg, world, root / "judge", tmp_path)
    text = load_clip(root / "clip")
    gen, info = build_demo_generator(cfg, world, text, training_key_of(root / "clip"), records, tmp_path / "gen",
                                     tmp_path)  # fmt: skip
    assert info["source"] == "shipped"  # the shipped weights were made for exactly this split and config
    effect = reference_effect(gen, load_clip(root / "judge"), world, records, cfg)
    print(json.dumps(effect, indent=1))
    as_ref = effect["judged_as_reference_concept"]
    # without the reference the judge almost never names the other concept; with it, it does measurably
    assert as_ref["without_reference"]["acc"] <= 0.05
    assert effect["effect_lo"] > 0.05 and as_ref["with_reference"]["lo"] > as_ref["without_reference"]["hi"]
