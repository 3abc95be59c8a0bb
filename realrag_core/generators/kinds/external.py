"""A generator diffusers does not ship (e.g. the paper's Emu2-Gen, ``generators/emu2.py``), from a factory the config
names, behind the same protocol."""

from __future__ import annotations

import importlib
from typing import Literal

from pydantic import Field

from realrag_core.generators.base import Generator
from realrag_core.generators.kind import GeneratorChecks
from realrag_core.generators.kinds.diffusers_ip_adapter import DiffusersSamplingConfig
from realrag_core.generators.pretrained import pretrained_kind


class ExternalGeneratorConfig(GeneratorChecks):
    """A generator diffusers does not ship (e.g. the paper's Emu2-Gen), behind the same protocol: ``factory`` names
    a callable ``(options: dict, device: str) -> Generator`` as ``package.module:function``."""

    kind: Literal["external"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="package.module:function")
    options: dict = Field(default_factory=dict, description="passed to the factory as they are")
    sampling: DiffusersSamplingConfig = DiffusersSamplingConfig()


def open_generator(spec: ExternalGeneratorConfig, device: str):
    """``package.module:function`` from the config, called with (options, device); its result must follow the
    protocol. Import problems are reported as the configured generator not being installed."""
    from realrag_core.generators.emu2 import GeneratorNotInstalled

    module_name, function = spec.factory.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise GeneratorNotInstalled(f"generator.factory {spec.factory} cannot be loaded: {err}") from err
    gen = factory(dict(spec.options), device)
    if not isinstance(gen, Generator):
        raise TypeError(f"{spec.factory} returned {type(gen).__name__}, which lacks generator_id / generate()")
    return gen, {"kind": spec.kind, "generator_id": gen.generator_id, "factory": spec.factory}


KIND = pretrained_kind(ExternalGeneratorConfig, open_generator)
