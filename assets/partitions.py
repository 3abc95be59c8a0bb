"""Prompt-shard partitions of generated_images and rag_images, and their backfill policy.

The shard count comes from the profile in $REALRAG_CONFIG when the code location loads (a partitions
definition is part of the code, not of a run). Which prompt falls in which shard is realrag_core.data.shards."""

import warnings

import dagster as dg

from .resources import location_operations
from realrag_core.data.shards import shard_names

# `backfill_policy` is what lets one run cover many shards (the model loads once); Dagster marks the parameter
# beta and says so at every load of the code location, on every command. We use it on purpose, pinned to
# dagster 1.13: this one message, of this one category, is not repeated to the user (README "Warnings").
warnings.filterwarnings(
    "ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta", category=dg.BetaWarning
)

_OPS = location_operations()
SHARD_NAMES = shard_names(_OPS.prompt_shards)
PROMPT_SHARDS = dg.StaticPartitionsDefinition(SHARD_NAMES)
SHARD_BACKFILL = (
    dg.BackfillPolicy.single_run()
    if _OPS.shards_per_run is None
    else dg.BackfillPolicy.multi_run(max_partitions_per_run=_OPS.shards_per_run)
)
# run tags that make a run cover every shard (the main job carries them: one run, every prompt)
ALL_SHARDS = {
    "dagster/asset_partition_range_start": SHARD_NAMES[0],
    "dagster/asset_partition_range_end": SHARD_NAMES[-1],
}


def selected_shards(context: dg.AssetExecutionContext) -> list[str]:
    """The shards this run materializes: one partition key, a range (single-run backfill), or an error that says
    how to run a partitioned stage."""
    if context.has_partition_key_range or context.has_partition_key:
        return list(context.partition_keys)
    name = context.assets_def.key.to_user_string()
    raise dg.Failure(
        f"{name} is partitioned by prompt shard ({SHARD_NAMES[0]} .. {SHARD_NAMES[-1]}): run it with a partition "
        f"(--partition {SHARD_NAMES[0]}), a range (--partition-range {SHARD_NAMES[0]}...{SHARD_NAMES[-1]}), a UI "
        "backfill, or the realrag job, which covers every shard"
    )
