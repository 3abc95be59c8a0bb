"""The human study's tasks (issue 20): drawn from the RAG stage's current images, one folder per study version."""

import dagster as dg

from .partitions import SHARD_NAMES
from .resources import RealRagConfigResource
from realrag_core.human_eval.tasks import build_tasks, study_inputs, write_tasks


@dg.asset(
    group_name="realrag",
    deps=["rag_images"],
    kinds={"parquet"},
    code_version="1",
    description=(
        "The human study's tasks (pairwise, rating, real-or-generated, gold) from rag_images' current rows, balanced and seeded; served by `realrag human-eval serve`. README: \"Human evaluation\"."
    ),
)
def human_eval_tasks(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    rows, real, lineage = study_inputs(cfg, store, len(SHARD_NAMES))
    table, report = build_tasks(rows, real, cfg.human_eval)
    path = write_tasks(table, store.human_eval_dir)
    if report["arms_without_rows"]:
        context.log.warning(f"human_eval.arms without RAG rows, left out: {report['arms_without_rows']}")
    if not real:
        context.log.warning("no reference style (world.styles.reference): no real-or-generated or gold tasks")
    store.write_report("human_eval_tasks", {**report, **lineage, "path": str(path)})
    return dg.MaterializeResult(
        metadata={
            "study": report["study"],
            "dagster/row_count": report["tasks"],
            **{f"tasks/{k}": v for k, v in report["by_kind"].items()},
            "not_shown_same_file": report["not_shown_same_file"],
            "path": dg.MetadataValue.path(str(path)),
        }
    )
