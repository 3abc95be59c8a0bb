"""What a generator kind declares. Each kind's module (``generators/kinds/``) builds one ``GeneratorKind``;
``generators/kinds/registry.py`` collects them and the config tree's ``generator`` union is built from it.

Kind modules and what they call never import the config tree (``config.tree``), which is built from them: they
take the tree as an untyped ``cfg``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, get_args

from pydantic import Field

from realrag_core.config.base import StrictModel

INFO_FILE = "generator.json"  # the generator asset's checkpoint record: what later stages open


class GeneratorChecks(StrictModel):
    """Sizes of the generator asset's property checks, the same for every generator kind."""

    check_samples_per_concept: int = Field(2, ge=1, description="samples per concept for the property checks")
    check_max_concepts: int | None = Field(
        None, ge=1, description="at most this many concepts per split in the property checks (chosen by seed)"
    )


@dataclass(frozen=True)
class GeneratorKind:
    """One kind of generator.

    ``config``: its pydantic section (its ``kind`` literal names it; a ``cache_folder`` class variable, if any, is
    where ``model_cache`` puts its downloads). ``build(cfg, world, records, folder, reports, force)``: the
    ``generator`` asset's work (train, or take shipped weights, or open a pretrained model), returning
    ``(generator, info)`` and leaving ``folder/generator.json``. ``open_stored(cfg, store)``: what later stages open,
    ``(generator, info, base CLIP)``, refusing a record made for another config. ``recorded_id(cfg, info)``: the
    generator id a record names, read without loading weights. ``untrained(cfg, generator)``: an untrained copy
    for the untrained-generator control, for kinds that train (None: the control is not defined)."""

    config: type
    build: Callable[..., tuple]
    open_stored: Callable[..., tuple]
    recorded_id: Callable[..., str]
    untrained: Callable | None = None

    @property
    def name(self) -> str:
        return get_args(self.config.model_fields["kind"].annotation)[0]
