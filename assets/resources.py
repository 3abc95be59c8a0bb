"""Dagster resources: the one config tree, opened once per run."""

from __future__ import annotations

from typing import Any

import dagster as dg
import torch
from pydantic import Field

from realrag_core.storage.sync import artifact_sync
from realrag_core.config.loading import load_config
from realrag_core.config.operations import OperationsConfig
from realrag_core.config.tree import RealRagConfig
from realrag_core.storage.store import ArtifactStore


class RealRagConfigResource(dg.ConfigurableResource):
    """The validated pydantic config tree (``$REALRAG_CONFIG``, default ``configs/demo.yaml``).

    An invalid profile fails here, before any asset does work, with a message naming the field. With the
    profile's artifacts on object storage (``artifacts_uri``), the working copy is brought up to date when the
    resource starts (once per run in process, once per step on the multiprocess, Celery and Kubernetes
    executors) and what the step changed is sent back when it ends, failed or not.
    """

    config_path: str = Field(default="", description="YAML profile; empty: $REALRAG_CONFIG, then configs/demo.yaml")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted keys set on top of the profile for this run, e.g. "
        "{'mining.k': 3, 'retriever.lr_grid': [0.0001], 'rag.seeds': [0]} (validated like the YAML)",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        cfg = self.load()
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        sync = artifact_sync(cfg) if context.dagster_run is not None else None  # runs only, not sensor ticks
        if sync is not None:
            context.log.info(f"artifacts {sync.uri} -> {cfg.artifacts_root}: {sync.pull().summary()}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        sync = artifact_sync(self.load()) if context.dagster_run is not None else None
        if sync is not None:
            context.log.info(f"artifacts {sync.local} -> {sync.uri}: {sync.push().summary()}")

    def load(self) -> RealRagConfig:
        return load_config(self.config_path or None, self.overrides or None)

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.load().artifacts_root)


def location_operations() -> OperationsConfig:
    """The ``operations`` section of the profile in $REALRAG_CONFIG, read when the code location loads (shard
    count, cron): what definitions need before any run. An invalid profile falls back to the defaults here and
    fails in the resource, with its message, when a run starts."""
    try:
        return load_config().operations
    except Exception:  # noqa: BLE001
        return OperationsConfig()
