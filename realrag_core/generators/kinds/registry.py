"""The generator kinds, collected: the config tree's ``generator`` union is built from ``KINDS`` (a section without
``kind`` is the demo generator), and ``generators/registry.py`` dispatches every stage through the kind its config
names. Nothing else branches on a generator's kind."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Discriminator, Tag

from realrag_core.config.base import kind_or
from realrag_core.generators.kind import GeneratorKind
from realrag_core.generators.kinds import demo_diffusion, diffusers_ip_adapter, diffusers_omnigen, external

KINDS: dict[str, GeneratorKind] = {
    m.KIND.name: m.KIND for m in (demo_diffusion, diffusers_ip_adapter, diffusers_omnigen, external)
}

GeneratorConfig = Annotated[
    Union[tuple(Annotated[k.config, Tag(name)] for name, k in KINDS.items())],
    Discriminator(kind_or("demo_diffusion")),
]


def kind_of(spec) -> GeneratorKind:
    try:
        return KINDS[spec.kind]
    except KeyError:
        raise TypeError(f"unknown generator config {type(spec).__name__}") from None
