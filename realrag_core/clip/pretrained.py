"""Pretrained open_clip models by name and tag (ViT-B-32 / laion2b_s34b_b79k, ViT-L-14 / openai, ...).

Loaded once with open_clip's factory and its normal weight cache (``cache_dir`` or open_clip's default), then
stored in the artifact store in open_clip's own ``local-dir:`` layout (``open_clip_config.json`` with the model
and preprocessing config + safetensors weights). Every later stage, fine-tuning included, opens that folder
exactly as it opens the demo CLIP, so nothing downstream branches on where the model came from. The model's
name and tag become its model id, which the embedding table records.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from realrag_core.clip.bundle import CONFIG_NAME, TRAINING_FILE, WEIGHTS_NAME, save_clip
from realrag_core.config.clip import PretrainedClipConfig


def pretrained_name(spec: PretrainedClipConfig) -> str:
    import open_clip

    if spec.pretrained:  # a tag, or a checkpoint file by its name (not the folder it lies in)
        tag = Path(spec.pretrained).name if Path(spec.pretrained).is_file() else spec.pretrained
        return f"open_clip:{spec.model}/{tag}"
    schema, identifier = open_clip.factory.parse_model_name(spec.model)
    if schema == "local-dir":  # its folder's name, not where the folder lies: a moved clone is the same model
        return f"open_clip:local-dir:{Path(identifier).name}"
    if schema is not None:  # hf-hub: models bring their weights: nothing is random
        return f"open_clip:{spec.model}"
    return f"open_clip:{spec.model}/random"


def _file_stamp(path: Path) -> str:
    """Name, size and modification time: the folder it lies in is left out, so moving a clone (which keeps
    them) reuses the materialized copy; a copy that changes the times materializes again, the same weights."""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def pretrained_key(spec: PretrainedClipConfig) -> str:
    import open_clip

    tag = spec.pretrained
    if tag and Path(tag).is_file():  # a checkpoint file: its bytes, not its path, decide reuse
        tag = _file_stamp(Path(tag))
    schema, identifier = open_clip.factory.parse_model_name(spec.model)
    if not tag and schema == "local-dir" and Path(identifier).is_dir():  # new weights there: materialize again
        files = sorted(Path(identifier).iterdir())
        tag = [_file_stamp(p) for p in files if p.name.startswith("open_clip_") and p.is_file()]
    model = f"local-dir:{Path(identifier).name}" if schema == "local-dir" else spec.model
    return hashlib.sha256(json.dumps([model, tag]).encode()).hexdigest()[:16]


def materialize_pretrained(spec: PretrainedClipConfig, folder: Path, force: bool = False) -> dict:
    """Put the named pretrained model into ``folder`` (reused when the same name and tag are already there)."""
    import open_clip

    folder = Path(folder)
    key = pretrained_key(spec)
    meta = folder / TRAINING_FILE
    previous = json.loads(meta.read_text()) if meta.is_file() else {}
    if not force and previous.get("key") == key and (folder / WEIGHTS_NAME).is_file():
        return {**previous, "reused": True}
    model_cfg = open_clip.get_model_config(spec.model)
    if model_cfg is None:
        raise ValueError(f"open_clip has no model named {spec.model!r}; see open_clip.list_models()")
    start = time.perf_counter()
    model, _, _ = open_clip.create_model_and_transforms(
        spec.model, pretrained=spec.pretrained, cache_dir=str(spec.cache_dir) if spec.cache_dir else None
    )
    if spec.pretrained and not Path(spec.pretrained).is_file():
        if open_clip.get_pretrained_cfg(spec.model, spec.pretrained).get("quick_gelu"):
            model_cfg["quick_gelu"] = True  # e.g. OpenAI's weights: the saved config must rebuild the same model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": dict(model.visual.preprocess_cfg)}, indent=2)
    )
    name = pretrained_name(spec)
    info = {
        "key": key,
        "model_id": save_clip(model, folder, name),
        "model_name": name,
        "pretrained": spec.pretrained,
        "load_seconds": round(time.perf_counter() - start, 1),
        "params": sum(p.numel() for p in model.parameters()),
    }
    meta.write_text(json.dumps(info))
    return {**info, "reused": False}
