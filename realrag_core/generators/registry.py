"""One entry point per stage for every generator kind in the config: the ``generator`` asset builds or loads
it, later stages open what that asset recorded. Assets never branch on the kind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from realrag_core.clip.bundle import ClipBundle, load_clip
from realrag_core.config.generators import (
    DemoGeneratorConfig,
    DiffusersGeneratorConfig,
    ExternalGeneratorConfig,
    OmniGenGeneratorConfig,
)
from realrag_core.config.tree import RealRagConfig
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.storage.store import ArtifactStore
from realrag_core.data.world import World, load_world
from realrag_core.generators.base import Generator

INFO_FILE = "generator.json"


def diffusers_generator_id(spec: DiffusersGeneratorConfig | OmniGenGeneratorConfig) -> str:
    """Names the model, its revision and the adapter (IP-Adapter weights, or OmniGen's own image input); the hash
    covers every setting that changes images."""
    speed_only = {
        "cpu_offload": True,
        "compile": True,
        "cache_dir": True,
        "token_env": True,
        "sampling": {"batch_size"},
    }  # where and how fast, never which images (batch neighbours are tested)
    digest = hashlib.sha256(
        json.dumps(spec.model_dump(mode="json", exclude=speed_only), sort_keys=True).encode()
    ).hexdigest()[:12]
    if isinstance(spec, OmniGenGeneratorConfig):
        return f"diffusers:omnigen:{spec.model}@{spec.revision or 'unpinned'}+input_images:{digest}"
    return f"diffusers:{spec.family}:{spec.model}@{spec.revision or 'unpinned'}+{spec.ip_adapter.weight_name}:{digest}"


def _open_diffusers(cfg: RealRagConfig) -> tuple[Generator, dict]:
    from realrag_core.generators.diffusers_ip import DiffusersIPAdapterGenerator, denoiser, load_pipeline
    from realrag_core.generators.diffusers_omnigen import OmniGenGenerator, load_omnigen_pipeline

    spec = cfg.generator
    gid = diffusers_generator_id(spec)
    info = {"kind": spec.kind, "generator_id": gid, "model": spec.model, "revision": spec.revision, "dtype": spec.dtype}
    if isinstance(spec, OmniGenGeneratorConfig):
        pipe = load_omnigen_pipeline(spec, cfg.device)
        gen = OmniGenGenerator(pipe, spec, gid)
        info.update(family="omnigen", reference_prompt=spec.reference_prompt)
    else:
        pipe = load_pipeline(spec, cfg.device)
        gen = DiffusersIPAdapterGenerator(pipe, spec, gid)
        info.update(family=spec.family, ip_adapter=spec.ip_adapter.model_dump(mode="json"))
    return gen, {**info, "params": sum(p.numel() for p in denoiser(pipe).parameters())}


def _open_external(cfg: RealRagConfig) -> tuple[Generator, dict]:
    """``package.module:function`` from the config, called with (options, device); its result must follow the
    protocol. Import problems are reported as the configured generator not being installed."""
    import importlib

    from realrag_core.generators.emu2 import GeneratorNotInstalled

    spec = cfg.generator
    module_name, function = spec.factory.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise GeneratorNotInstalled(f"generator.factory {spec.factory} cannot be loaded: {err}") from err
    gen = factory(dict(spec.options), cfg.device)
    if not isinstance(gen, Generator):
        raise TypeError(f"{spec.factory} returned {type(gen).__name__}, which lacks generator_id / generate()")
    return gen, {"kind": spec.kind, "generator_id": gen.generator_id, "factory": spec.factory}


def _open_pretrained(cfg: RealRagConfig) -> tuple[Generator, dict]:
    return _open_external(cfg) if isinstance(cfg.generator, ExternalGeneratorConfig) else _open_diffusers(cfg)


def _expected_id(cfg: RealRagConfig) -> str | None:
    diffusers = isinstance(cfg.generator, (DiffusersGeneratorConfig, OmniGenGeneratorConfig))
    return diffusers_generator_id(cfg.generator) if diffusers else None


def build_generator(
    cfg: RealRagConfig, world: World, records: list[ImageRecord], folder: Path, reports: Path, force: bool = False
) -> tuple[Generator, dict]:
    """The ``generator`` asset's work: train (or take shipped weights of) the demo generator with its own text
    encoder, or load a pretrained diffusers pipeline; either way ``folder/generator.json`` records what later
    stages must open."""
    if isinstance(cfg.generator, DemoGeneratorConfig):
        from realrag_core.generators.demo.training import build_demo_generator

        return build_demo_generator(cfg, world, records, folder, reports, force)
    gen, info = _open_pretrained(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return gen, {**info, "source": "pretrained"}


def recorded_generator_id(cfg: RealRagConfig, store: ArtifactStore) -> str:
    """The id of the generator the ``generator`` stage recorded in its checkpoint (what every later stage
    generates with), read without loading any weights."""
    path = store.generator_dir / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INFO_FILE} in {store.generator_dir}: materialize the generator first")
    info = json.loads(path.read_text())
    if isinstance(cfg.generator, DemoGeneratorConfig):
        from realrag_core.generators.demo.training import demo_generator_id

        return demo_generator_id(info["key"], cfg.generator.sampling)
    return info["generator_id"]


def open_stored_generator(cfg: RealRagConfig, store: ArtifactStore) -> tuple[Generator, dict, ClipBundle]:
    """The generator the ``generator`` asset recorded, with the base CLIP (the LanceDB table's encoder; the demo
    generator reads prompts with its own text encoder). Refuses a record made for another generator config."""
    if isinstance(cfg.generator, DemoGeneratorConfig):
        from realrag_core.generators.demo.training import open_demo_generator

        gen, info = open_demo_generator(cfg, load_world(store.world_dir), store.generator_dir)
        return gen, info, load_clip(store.clip_dir, cfg.device, cfg.precision)
    path = store.generator_dir / INFO_FILE
    recorded = json.loads(path.read_text()).get("generator_id") if path.is_file() else None
    expected = _expected_id(cfg)
    if recorded is None or (expected is not None and recorded != expected):
        raise ValueError(
            f"the generator asset recorded {recorded!r}, the config asks for {expected or 'another'!r}: "
            "materialize the generator asset again"
        )
    gen, info = _open_pretrained(cfg)
    if gen.generator_id != recorded:
        raise ValueError(
            f"the generator asset recorded {recorded!r}, the configured one is {gen.generator_id!r}: "
            "materialize the generator asset again"
        )
    return gen, info, load_clip(store.clip_dir, cfg.device, cfg.precision)
