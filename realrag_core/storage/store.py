"""Where each stage keeps its artifacts under the profile's ``artifacts_root``.

Stages read their inputs from here (LanceDB, Parquet, safetensors), never from Dagster's IO storage, so a
stage can run alone in a fresh process (the CLI's ``asset materialize --select image_embeddings``).
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path


@dataclass(frozen=True)
class ArtifactStore:
    root: Path

    def _dir(self, *parts: str) -> Path:
        path = Path(self.root, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def world_dir(self) -> Path:
        return self._dir("world")

    @property
    def clip_dir(self) -> Path:
        return self._dir("checkpoints", "clip_backbone")

    @property
    def judge_dir(self) -> Path:
        return self._dir("checkpoints", "judge")

    @property
    def generator_dir(self) -> Path:
        return self._dir("checkpoints", "generator")

    @property
    def generated_dir(self) -> Path:
        return self._dir("generated")

    @property
    def negatives_path(self) -> Path:
        return self._dir("negatives") / "reflective_negatives.parquet"

    @property
    def rag_dir(self) -> Path:
        return self._dir("rag")

    @property
    def human_eval_dir(self) -> Path:
        """One folder per study version (its tasks; later its votes and results)."""
        return self._dir("human_eval")

    def checkpoint_dir(self, name: str) -> Path:
        return self._dir("checkpoints", name)

    def retriever_dir(self, name: str, protocol: str = "unseen_concepts") -> Path:
        """A retriever asset's models for one protocol (``retriever_key``)."""
        return self.checkpoint_dir(retriever_key(name, protocol))

    @property
    def rejects_dir(self) -> Path:
        return self._dir("rejects")

    @property
    def reports_dir(self) -> Path:
        return self._dir("reports")

    def write_report(self, name: str, data: dict) -> Path:
        """A stage's measured numbers as JSON under reports/ (read by the summary and the README table). Paths
        under the artifacts root are written relative to it, so reports still hold when the artifacts travel
        (object storage, another machine); paths outside it (a user's source folder) stay as given."""
        import json

        path = self.reports_dir / f"{name}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(relative_paths(data, self.root), indent=2, default=str))
        os.replace(tmp, path)  # atomic: a reader sees the old report or the new one, never half of one
        return path

    def read_negatives(self) -> list[dict]:
        """Stage 3's output, the reflective negatives (one row per generated image and rank); [] before it ran."""
        import pyarrow.parquet as pq

        return pq.read_table(self.negatives_path).to_pylist() if self.negatives_path.is_file() else []

    def read_report(self, name: str) -> dict | None:
        import json

        path = Path(self.root, "reports", f"{name}.json")
        return json.loads(path.read_text()) if path.is_file() else None


def relative_paths(value, root: Path):
    """``value`` with every absolute path under ``root`` (strings and Paths, in nested dicts and lists) made
    relative to it, as a POSIX string; other values as they are."""
    base = os.path.realpath(root)

    def convert(v):
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, (str, Path)) and os.path.isabs(v):
            full = os.path.realpath(v)
            if full == base or full.startswith(base + os.sep):
                return Path(os.path.relpath(full, base)).as_posix()
            return str(v) if isinstance(v, Path) else v
        return v

    return convert(value)


def retriever_key(name: str, protocol: str = "unseen_concepts") -> str:
    """The folder and report name of a retriever asset's models for one protocol: the asset's name for
    unseen_concepts (where every earlier version kept them), ``<name>__<protocol>`` otherwise."""
    return name if protocol == "unseen_concepts" else f"{name}__{protocol}"


def profiles_with_runs(marker: str, exclude: Path, folder: Path | None = None) -> list[str]:
    """The profiles in ``folder`` (default: the repository's configs/) whose artifacts hold ``marker`` (a path
    under the artifacts root), other than the one at ``exclude``: what a user who ran another profile and asked
    without naming it should be pointed to. Profiles that do not load are skipped."""
    from realrag_core.config.base import ConfigError
    from realrag_core.config.loading import load_config

    folder = folder or Path(__file__).resolve().parents[2] / "configs"
    found = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            root = Path(load_config(path).artifacts_root)
        except (ConfigError, ValueError, OSError):
            continue
        if root.resolve() != Path(exclude).resolve() and (root / marker).exists():
            found.append(str(path))
    return found


def profile_hint(cfg, marker: str, named: bool) -> str:
    """One line naming the profile an answer comes from; when it was not named (--config, $REALRAG_CONFIG),
    also the other profiles that have ``marker``, so a user of their own profile is not shown the demo's."""
    line = f"profile '{cfg.name}' ({cfg.artifacts_root})"
    if named:
        return line
    others = profiles_with_runs(marker, Path(cfg.artifacts_root))
    line += " by default (pass --config or set REALRAG_CONFIG)"
    if others:
        line += "; other profiles with runs: " + ", ".join(os.path.relpath(o) for o in others)
    return line
