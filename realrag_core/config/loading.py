"""Loading a profile: YAML with ``extends``, overrides, paths resolved beside the file, the model cache filled
in, one :class:`ConfigError` naming the field."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml
from pydantic import (
    ValidationError,
)

from realrag_core.config.base import CONFIG_ENV_VAR, DEFAULT_CONFIG, ConfigError, kind_members
from realrag_core.config.clip import ClipConfig, JudgeConfig, PretrainedClipConfig
from realrag_core.generators.kinds.registry import GeneratorConfig
from realrag_core.config.stages import InceptionConfig
from realrag_core.data.sources.registry import SourceConfig
from realrag_core.config.tree import RealRagConfig


# --------------------------------------------------------------------------- loading


_PATH_KEYS = {
    "artifacts_root",
    "npm_cache",
    "image_dir",
    "captions",
    "root",
    "shipped_weights",
    "cache_dir",
    "weights",
    "model_cache",
}
_MODEL_KEYS = {"model", "repo", "pretrained", "image_encoder_folder"}  # a hub id, or a folder when written as ./ or ../
_LOCAL_DIR = "local-dir:"


def _beside(value: str, base: Path) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(node, base: Path):
    """Resolve relative path-valued keys against the config file's folder."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not isinstance(value, str):
                out[key] = _resolve_paths(value, base)
            elif key in _PATH_KEYS or (key == "table_uri" and "://" not in value):  # table_uri: a local LanceDB folder
                out[key] = _beside(value, base)
            elif key in _MODEL_KEYS and value.startswith(("./", "../")):
                out[key] = str((base / value).resolve())
            elif key == "model" and value.startswith(_LOCAL_DIR):  # open_clip's folder schema
                out[key] = _LOCAL_DIR + _beside(value.removeprefix(_LOCAL_DIR), base)
            else:
                out[key] = _resolve_paths(value, base)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, base) for v in node]
    return node


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc or '<root>'}: {msg}")
    return f"invalid config {path}: " + "; ".join(lines)


def config_path_from_env() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG).expanduser().resolve()


# the kinds of each section that has kinds, from the unions the tree is built from
_SECTION_KINDS = {
    "source": kind_members(SourceConfig),
    "clip": kind_members(ClipConfig),
    "judge": kind_members(JudgeConfig),
    "generator": kind_members(GeneratorConfig),
}
# union tags pydantic puts into error locations; left out of the field path in messages
_UNION_TAGS = {tag for kinds in _SECTION_KINDS.values() for tag in kinds}


def _fill_model_cache(data: dict) -> dict:
    """``model_cache: <folder>``: one folder for every download (open_clip/, huggingface/, torch/ inside); a
    section's own ``cache_dir`` wins. Cache folders never enter a model's id."""
    root = data.get("model_cache")
    if not root:
        return data
    data = copy.deepcopy(data)
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    sections = [
        (data.get(k), kinds.get(data[k].get("kind")) if isinstance(data.get(k), dict) else None)
        for k, kinds in _SECTION_KINDS.items()
    ]
    sections += [(metrics.get("clip_score"), PretrainedClipConfig), (metrics.get("inception"), InceptionConfig)]
    for section, cls in sections:
        folder = getattr(cls, "cache_folder", None)
        if isinstance(section, dict) and folder:
            section.setdefault("cache_dir", str(Path(root) / folder))
    return data


def parse_config(data: dict, base_dir: Path, origin: str = "<dict>") -> RealRagConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping")
    try:
        return RealRagConfig.model_validate(_fill_model_cache(_resolve_paths(data, base_dir)))
    except ValidationError as err:
        raise ConfigError(_format_error(Path(origin), err)) from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RealRagConfig:
    """Load and validate a profile. ``path`` defaults to $REALRAG_CONFIG, then configs/demo.yaml.

    ``overrides``: dotted keys set on top of the profile before validation, e.g. ``{"mining.k": 3,
    "retriever.lr_grid": [1e-4]}`` (the Dagster launchpad passes them through the resource)."""
    path = Path(path).expanduser().resolve() if path else config_path_from_env()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (set {CONFIG_ENV_VAR} or pass a path)")
    data = _read_profile(path, ())
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    return parse_config(data, path.parent, str(path))


def apply_overrides(data: dict, overrides: dict, origin: str = "<dict>") -> dict:
    """A copy of ``data`` with each dotted key set (mappings on the way are created when missing)."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"invalid override {dotted!r} for {origin}: {'.'.join(parts[: i + 1])} is not a mapping"
                )
            node = child
        node[parts[-1]] = value
    return data


def _read_profile(path: Path, seen: tuple[Path, ...]) -> dict:
    """A profile's YAML with its relative paths resolved against its own folder; ``extends: <file>`` starts from
    another profile and overrides it key by key (mappings merge, everything else replaces; a mapping whose
    ``kind`` differs from the base's, e.g. another generator, replaces the base's mapping whole)."""
    if path in seen:
        raise ConfigError(f"invalid config {path}: 'extends' loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (f" (extended by {seen[-1]})" if seen else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid config {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}: the top level must be a mapping")
    data = _resolve_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_profile((path.parent / parent).resolve(), (*seen, path)), data)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        mergeable = isinstance(value, dict) and isinstance(out.get(key), dict)
        if mergeable and "kind" in value and value["kind"] != out[key].get("kind"):
            mergeable = False
        out[key] = _merge(out[key], value) if mergeable else value
    return out
