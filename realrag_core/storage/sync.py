"""Artifacts on object storage: the profile's ``artifacts_uri`` (s3://bucket/prefix, or any URI pyarrow's
filesystems open) holds every artifact; ``artifacts_root`` is this machine's working copy of it.

Stages keep reading and writing plain files under ``artifacts_root`` (PIL, Parquet, safetensors, JSON). Before a
step the working copy is brought up to date from the store (``pull``), after it the files the step changed go
back (``push``), so a fresh machine (a Kubernetes pod, a Celery worker elsewhere) starts from what earlier steps
left, and two steps on two machines each send only their own changes. The LanceDB table is not synced: it lives
on the object store itself (``<artifacts_uri>/lancedb`` unless ``embeddings.table_uri`` says otherwise), where
Lance commits with conditional writes.

What was last synced is recorded per file in ``<artifacts_root>/.sync/state.json``: the remote object's size and
modification time and the local file's size and modification time (ns). A pull downloads what changed on the
store since (and removes what was deleted there); a push uploads what changed here since (and deletes on the
store what was deleted here). Steps sharing one working copy (workers on one host) take a file lock around each
pull and push. Connection and credentials come from the standard variables every client here reads (pyarrow,
Lance, boto3): AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for an
http:// endpoint such as a local MinIO or moto server).
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

STATE_DIR = ".sync"
SKIP = ("lancedb/", f"{STATE_DIR}/")  # the table lives on the store itself; the sync state is this copy's own


@dataclass
class SyncReport:
    direction: str
    copied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes: int = 0

    def summary(self) -> str:
        verb = "downloaded" if self.direction == "pull" else "uploaded"
        return (
            f"{self.direction}: {len(self.copied)} files {verb} ({self.bytes / 1e6:.1f} MB), "
            f"{len(self.deleted)} deleted, {self.unchanged} unchanged"
        )


def is_remote(uri: str | None) -> bool:
    return bool(uri) and "://" in uri and not uri.startswith("file://")


class ArtifactSync:
    """The working copy ``local_root`` of the artifacts at ``uri``."""

    def __init__(self, uri: str, local_root: Path, filesystem: pafs.FileSystem | None = None):
        if filesystem is None:
            filesystem, base = pafs.FileSystem.from_uri(uri)
        else:
            base = uri.split("://", 1)[-1]
        self.uri = uri.rstrip("/")
        self.fs = filesystem
        self.base = base.rstrip("/")
        self.local = Path(local_root)
        self.state_dir = self.local / STATE_DIR

    # ------------------------------------------------------------------ state

    @contextmanager
    def _locked(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self._read_state()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_state(self) -> dict:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_state(self, state: dict) -> None:
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, self.state_dir / "state.json")

    @staticmethod
    def _skipped(rel: str) -> bool:
        return rel.startswith(SKIP) or rel.rsplit("/", 1)[-1].startswith(".tmp-")  # a download in progress

    def _remote(self) -> dict[str, pafs.FileInfo]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return {}
        out = {}
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[len(self.base) + 1 :]
                if not self._skipped(rel):
                    out[rel] = info
        return out

    def _local(self) -> dict[str, os.stat_result]:
        out = {}
        if not self.local.is_dir():
            return out
        for path in self.local.rglob("*"):
            if path.is_file() and not path.is_symlink():
                rel = path.relative_to(self.local).as_posix()
                if not self._skipped(rel):
                    out[rel] = path.stat()
        return out

    @staticmethod
    def _remote_key(info: pafs.FileInfo) -> list:
        return [info.size, info.mtime_ns]

    @staticmethod
    def _local_key(stat: os.stat_result) -> list:
        return [stat.st_size, stat.st_mtime_ns]

    # ------------------------------------------------------------------ transfers

    def pull(self, prefixes: tuple[str, ...] = ()) -> SyncReport:
        """Bring the working copy up to date with the store: download what changed there, remove what it
        deleted. A file changed both here and there takes the store's version (the store is the source of truth).
        ``prefixes`` (e.g. ``("reports/",)``) limits the pull to those folders."""
        report = SyncReport("pull")
        with self._locked() as state:
            remote = {k: v for k, v in self._remote().items() if not prefixes or k.startswith(prefixes)}
            for rel, info in sorted(remote.items()):
                target = self.local / rel
                record = state.get(rel)
                if record and record["remote"] == self._remote_key(info) and target.is_file():
                    report.unchanged += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".tmp-{target.name}")
                with self.fs.open_input_stream(f"{self.base}/{rel}") as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                os.replace(tmp, target)
                state[rel] = {"remote": self._remote_key(info), "local": self._local_key(target.stat())}
                report.copied.append(rel)
                report.bytes += info.size
            for rel in sorted(r for r in set(state) - set(remote) if not prefixes or r.startswith(prefixes)):
                target = self.local / rel
                if target.is_file() and self._local_key(target.stat()) == state[rel]["local"]:
                    target.unlink()  # deleted on the store, untouched here
                    report.deleted.append(rel)
                del state[rel]
            self._write_state(state)
        return report

    def push(self) -> SyncReport:
        """Send what changed in the working copy since the last sync to the store; delete there what was
        deleted here."""
        report = SyncReport("push")
        made: set[str] = set()
        with self._locked() as state:
            local = self._local()
            for rel, stat in sorted(local.items()):
                record = state.get(rel)
                if record and record["local"] == self._local_key(stat):
                    report.unchanged += 1
                    continue
                key = f"{self.base}/{rel}"
                parent = key.rsplit("/", 1)[0]
                if parent not in made:  # a no-op on object stores, needed on file systems
                    self.fs.create_dir(parent, recursive=True)
                    made.add(parent)
                with open(self.local / rel, "rb") as src, self.fs.open_output_stream(key) as dst:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                info = self.fs.get_file_info(key)
                state[rel] = {"remote": self._remote_key(info), "local": self._local_key(stat)}
                report.copied.append(rel)
                report.bytes += stat.st_size
            for rel in sorted(set(state) - set(local)):
                self.fs.delete_file(f"{self.base}/{rel}")
                report.deleted.append(rel)
                del state[rel]
            self._write_state(state)
        return report


def artifact_sync(cfg) -> ArtifactSync | None:
    """The profile's sync, or None when its artifacts are plain local files (no ``artifacts_uri``)."""
    if not cfg.artifacts_uri:
        return None
    return ArtifactSync(cfg.artifacts_uri, cfg.artifacts_root)
