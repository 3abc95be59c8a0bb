"""One entry point per stage for every generator kind in the config: the ``generator`` asset builds or loads
it, later stages open what that asset recorded. Assets never branch on the kind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..clip_backbone import ClipBundle, load_clip
from ..clip_pretrain import training_key_of
from ..config import DemoGeneratorConfig, DiffusersGeneratorConfig, RealRagConfig
from ..sources import ImageRecord
from ..store import ArtifactStore
from ..world import World, load_world
from .base import Generator

INFO_FILE = "generator.json"


def diffusers_generator_id(spec: DiffusersGeneratorConfig) -> str:
    """Names the model, its revision and the adapter; the hash covers every setting that changes images."""
    digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json", exclude={"cpu_offload", "compile"}),
                                       sort_keys=True).encode()).hexdigest()[:12]  # fmt: skip
    return f"diffusers:{spec.family}:{spec.model}@{spec.revision or 'unpinned'}+{spec.ip_adapter.weight_name}:{digest}"


def _open_diffusers(cfg: RealRagConfig) -> tuple[Generator, dict]:
    from .diffusers_ip import DiffusersIPAdapterGenerator, load_pipeline

    spec = cfg.generator
    pipe = load_pipeline(spec, cfg.device)
    gid = diffusers_generator_id(spec)
    info = {"kind": spec.kind, "generator_id": gid, "model": spec.model, "revision": spec.revision,
            "family": spec.family, "dtype": spec.dtype, "ip_adapter": spec.ip_adapter.model_dump(mode="json"),
            "params": sum(p.numel() for p in pipe.unet.parameters())}  # fmt: skip
    return DiffusersIPAdapterGenerator(pipe, spec, gid), info


def build_generator(cfg: RealRagConfig, world: World, text_clip: ClipBundle, text_key: str,
                    records: list[ImageRecord], folder: Path, reports: Path,
                    force: bool = False) -> tuple[Generator, dict]:  # fmt: skip
    """The ``generator`` asset's work: train (or take shipped weights of) the demo generator, or load a
    pretrained diffusers pipeline; either way ``folder/generator.json`` records what later stages must open."""
    if isinstance(cfg.generator, DemoGeneratorConfig):
        from .demo_training import build_demo_generator

        return build_demo_generator(cfg, world, text_clip, text_key, records, folder, reports, force)
    gen, info = _open_diffusers(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return gen, {**info, "source": "pretrained"}


def open_stored_generator(cfg: RealRagConfig, store: ArtifactStore) -> tuple[Generator, dict, ClipBundle]:
    """The generator the ``generator`` asset recorded, with the base CLIP (the LanceDB table's encoder, and the
    demo generator's text tower). Refuses a record made for another generator config."""
    if isinstance(cfg.generator, DemoGeneratorConfig):
        from .demo_training import open_demo_generator

        encoder = load_clip(store.clip_dir, cfg.device)
        gen, info = open_demo_generator(cfg, load_world(store.world_dir), encoder, training_key_of(store.clip_dir),
                                        store.generator_dir)  # fmt: skip
        return gen, info, encoder
    path = store.generator_dir / INFO_FILE
    recorded = json.loads(path.read_text()).get("generator_id") if path.is_file() else None
    expected = diffusers_generator_id(cfg.generator)
    if recorded != expected:
        raise ValueError(f"the generator asset recorded {recorded!r}, the config asks for {expected!r}: "
                         "materialize the generator asset again")  # fmt: skip
    gen, info = _open_diffusers(cfg)
    return gen, info, load_clip(store.clip_dir, cfg.device)
