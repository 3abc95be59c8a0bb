"""The demo generator as a kind: trained by the ``generator`` asset (or taken from shipped weights that match), with
its own text encoder (``generators/demo/``)."""

from __future__ import annotations

from realrag_core.generators.demo.config import DemoGeneratorConfig
from realrag_core.generators.kind import GeneratorKind


def _build(cfg, world, records, folder, reports, force: bool = False):
    from realrag_core.generators.demo.training import build_demo_generator

    return build_demo_generator(cfg, world, records, folder, reports, force=force)


def _open_stored(cfg, store):
    from realrag_core.clip.bundle import load_clip
    from realrag_core.data.world import load_world
    from realrag_core.generators.demo.training import open_demo_generator

    gen, info = open_demo_generator(cfg, load_world(store.world_dir), store.generator_dir)
    return gen, info, load_clip(store.clip_dir, cfg.device, cfg.precision)


def _recorded_id(cfg, info: dict) -> str:
    from realrag_core.generators.demo.training import demo_generator_id

    return demo_generator_id(info["key"], cfg.generator.sampling)


def _untrained(cfg, gen):
    from realrag_core.generators.demo.diffusion import untrained_like

    return untrained_like(gen, cfg.generator.train.seed)


KIND = GeneratorKind(DemoGeneratorConfig, _build, _open_stored, _recorded_id, _untrained)
