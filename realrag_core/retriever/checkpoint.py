"""Stage 4 checkpoints: the retriever's saved models and their record (retriever.json), the folder a killed swap
leaves, and loading every seed's model."""

from __future__ import annotations

import json
from pathlib import Path
from realrag_core.clip.bundle import CONFIG_NAME, ClipBundle, load_clip, save_clip


RETRIEVER_FILE = "retriever.json"


def save_retriever(clip: ClipBundle, base_folder: Path, folder: Path, info: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text((base_folder / CONFIG_NAME).read_text())
    model_id = save_clip(clip.model, folder).replace("demo-clip:", "retriever:")
    (folder / RETRIEVER_FILE).write_text(json.dumps({**info, "model_id": model_id}, indent=2))
    return model_id


def load_retriever(folder: Path, device: str = "cpu", precision: str = "float32") -> tuple[ClipBundle, dict]:
    info_path = folder / RETRIEVER_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"no {RETRIEVER_FILE} in {folder}: materialize the retriever first")
    bundle = load_clip(folder, device, precision)
    info = json.loads(info_path.read_text())
    bundle.model_id = info["model_id"]
    return bundle, info


def current_folder(folder: Path) -> Path:
    """The retrievers' folder, or the previous version a build was swapping out when it was killed."""
    old = folder.with_name(folder.name + ".old")
    if not (folder / RETRIEVER_FILE).is_file() and (old / RETRIEVER_FILE).is_file():
        return old
    return folder


def retriever_ids(folder: Path) -> dict[int, str]:
    """training seed -> model id of the models a retriever asset saved (its checkpoint record; no weights read)."""
    info_path = current_folder(folder) / RETRIEVER_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"no {RETRIEVER_FILE} in {folder}: materialize the retriever first")
    return {s["seed"]: s["model_id"] for s in json.loads(info_path.read_text())["seeds"]}


def load_retrievers(
    folder: Path, device: str = "cpu", precision: str = "float32"
) -> list[tuple[int, ClipBundle, str | None]]:
    """Every training seed's model a retriever asset saved, in seed order, with the name of the table its
    own image tower embedded (None: the shared table, the image tower was frozen)."""
    folder = current_folder(folder)
    info_path = folder / RETRIEVER_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"no {RETRIEVER_FILE} in {folder}: materialize the retriever first")
    seeds = json.loads(info_path.read_text())["seeds"]
    return [
        (s["seed"], load_retriever(folder / f"seed_{s['seed']}", device, precision)[0], s.get("table_name"))
        for s in seeds
    ]
