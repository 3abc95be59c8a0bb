"""One entry point per stage for every generator kind in the config: the ``generator`` asset builds or loads
it, later stages open what that asset recorded. Each call goes through the kind the config names
(``generators/kinds/``); assets never branch on the kind."""

from __future__ import annotations

import json
from pathlib import Path

from realrag_core.clip.bundle import ClipBundle
from realrag_core.config.tree import RealRagConfig
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.data.world import World
from realrag_core.generators.base import Generator
from realrag_core.generators.kind import INFO_FILE
from realrag_core.generators.kinds.registry import kind_of
from realrag_core.storage.store import ArtifactStore


def diffusers_generator_id(spec) -> str:
    """The id a pretrained diffusers section (IP-Adapter pipeline or OmniGen) implies: the model, its revision and
    how the reference enters; the hash covers every setting that changes images."""
    from realrag_core.generators.kinds import diffusers_ip_adapter, diffusers_omnigen

    by_kind = {
        "diffusers_ip_adapter": diffusers_ip_adapter.generator_id,
        "diffusers_omnigen": diffusers_omnigen.generator_id,
    }
    return by_kind[spec.kind](spec)


def build_generator(
    cfg: RealRagConfig, world: World, records: list[ImageRecord], folder: Path, reports: Path, *, force: bool = False
) -> tuple[Generator, dict]:
    """The ``generator`` asset's work: train (or take shipped weights of) the demo generator with its own text
    encoder, or load a pretrained pipeline; either way ``folder/generator.json`` records what later stages must
    open."""
    return kind_of(cfg.generator).build(cfg, world, records, folder, reports, force)


def recorded_generator_id(cfg: RealRagConfig, store: ArtifactStore) -> str:
    """The id of the generator the ``generator`` stage recorded in its checkpoint (what every later stage
    generates with), read without loading any weights."""
    path = store.generator_dir / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INFO_FILE} in {store.generator_dir}: materialize the generator first")
    return kind_of(cfg.generator).recorded_id(cfg, json.loads(path.read_text()))


def open_stored_generator(cfg: RealRagConfig, store: ArtifactStore) -> tuple[Generator, dict, ClipBundle]:
    """The generator the ``generator`` asset recorded, with the base CLIP (the LanceDB table's encoder; the demo
    generator reads prompts with its own text encoder). Refuses a record made for another generator config."""
    return kind_of(cfg.generator).open_stored(cfg, store)


def has_untrained_control(cfg: RealRagConfig) -> bool:
    """Whether the configured generator trains here, so that an untrained copy of it (a control) exists."""
    return kind_of(cfg.generator).untrained is not None


def untrained_copy(cfg: RealRagConfig, gen: Generator) -> Generator:
    """An untrained copy of a generator that trains here (the untrained-generator control)."""
    make = kind_of(cfg.generator).untrained
    if make is None:
        raise ValueError(f"the {cfg.generator.kind} generator does not train here: it has no untrained copy")
    return make(cfg, gen)
