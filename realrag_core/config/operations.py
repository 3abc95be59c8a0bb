"""Operations (pools, retries, schedules, the growth sensor) and the human study."""

from __future__ import annotations


from pydantic import (
    Field,
    field_validator,
)

from realrag_core.config.base import StrictModel


class OperationsConfig(StrictModel):
    """Scheduling in Dagster (the sensor and schedule are off until turned on in the UI)."""

    retrain_cron: str = Field("0 3 * * 0", description="cron of the retrain_retrievers schedule (default Sunday 03:00)")
    prompt_shards: int = Field(
        8,
        ge=1,
        le=10000,
        description="partitions of generated_images and rag_images (prompt shards). Read from the "
        "profile in $REALRAG_CONFIG when the code location loads (reload it after a change); it changes how the work "
        "is split, never the result",
    )
    shards_per_run: int | None = Field(
        None,
        ge=1,
        description="a backfill of many shards runs this many per run (the model loads once per run); "
        "null: all selected shards in one run (which the command line's asset materialize --partition-range needs)",
    )

    @field_validator("retrain_cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("a cron expression has five fields, e.g. '0 3 * * 0'")
        return v


# --------------------------------------------------------------------------- root


class HumanEvalConfig(StrictModel):
    """The human study's tasks (``realrag_core.human_eval.tasks``): how many per cell (protocol x known/novel x arm or
    arm pair), drawn by ``seed``."""

    seed: int = 0
    arms: tuple[str, ...] = Field(
        ("none", "clip", "contrastive", "reflective"), min_length=2, description="arms shown; every pair is compared"
    )
    pairwise_per_cell: int = Field(8, ge=0, description="pairwise tasks per protocol, split and arm pair")
    rating_per_cell: int = Field(8, ge=0, description="7-point rating tasks per protocol, split and arm")
    real_or_generated_per_cell: int = Field(
        8, ge=0, description="generated images per protocol, split and arm in the real-or-generated task (as many real)"
    )
    gold_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="gold tasks: this share of a stratum's pairwise tasks"
    )
    gold_threshold: float = Field(0.75, ge=0.0, le=1.0, description="raters below this gold-task accuracy are reported")
    exclude_failed_raters: bool = Field(True, description="leave raters below gold_threshold out of the numbers")
    bootstrap: int = Field(1000, ge=10, description="bootstrap draws (tasks and raters resampled) for 95% intervals")
    bt_alpha: float = Field(0.01, gt=0.0, description="ridge term of choix's Bradley-Terry fit")
    database_url: str | None = Field(
        None,
        description="where votes go (SQLAlchemy URL, e.g. postgresql://...); null: SQLite in <artifacts>/human_eval",
    )
    allowed_hosts: tuple[str, ...] = Field(
        ("127.0.0.1", "localhost"),
        min_length=1,
        description="Host headers the study page answers (add the proxy's public name when exposed behind one)",
    )

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, v):
        unknown = sorted(set(v) - {"none", "oracle", "clip", "contrastive", "reflective"})
        if unknown or len(set(v)) != len(v):
            raise ValueError(f"arms must be distinct RAG arms (none, oracle, clip, contrastive, reflective): {list(v)}")
        return v
