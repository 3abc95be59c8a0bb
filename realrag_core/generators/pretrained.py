"""The stage hooks every pretrained (not trained here) generator kind shares: the ``generator`` asset opens the model
and records its id; later stages open it again and refuse a record made for another config."""

from __future__ import annotations

import json
from typing import Callable

from realrag_core.clip.bundle import load_clip
from realrag_core.generators.base import Generator
from realrag_core.generators.kind import INFO_FILE, GeneratorKind


def pretrained_kind(
    config: type,
    open_generator: Callable[..., tuple[Generator, dict]],
    expected_id: Callable[..., str | None] = lambda spec: None,
) -> GeneratorKind:
    """A kind from ``open_generator(spec, device) -> (generator, info)`` and ``expected_id(spec)`` (the id the
    config implies before anything loads; None when only the opened generator knows it)."""

    def build(cfg, world, records, folder, reports, force: bool = False):
        gen, info = open_generator(cfg.generator, cfg.device)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
        return gen, {**info, "source": "pretrained"}

    def open_stored(cfg, store):
        path = store.generator_dir / INFO_FILE
        recorded = json.loads(path.read_text()).get("generator_id") if path.is_file() else None
        expected = expected_id(cfg.generator)
        if recorded is None or (expected is not None and recorded != expected):
            raise ValueError(
                f"the generator asset recorded {recorded!r}, the config asks for {expected or 'another'!r}: "
                "materialize the generator asset again"
            )
        gen, info = open_generator(cfg.generator, cfg.device)
        if gen.generator_id != recorded:
            raise ValueError(
                f"the generator asset recorded {recorded!r}, the configured one is {gen.generator_id!r}: "
                "materialize the generator asset again"
            )
        return gen, info, load_clip(store.clip_dir, cfg.device, cfg.precision)

    return GeneratorKind(config, build, open_stored, lambda cfg, info: info["generator_id"])
