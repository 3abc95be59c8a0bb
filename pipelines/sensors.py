"""Growth: a sensor notices that the image source changed and requests the incremental chain (new embeddings,
re-mined negatives); a schedule retrains the retrievers on the cron in the profile."""

import dagster as dg

from assets.resources import RealRagConfigResource, location_operations
from realrag_core.data.sources.registry import source_fingerprint
from realrag_core.human_eval.server import votes_state

GROWTH_CHAIN = [dg.AssetKey("image_embeddings"), dg.AssetKey("reflective_negatives")]


@dg.sensor(
    asset_selection=dg.AssetSelection.assets(*GROWTH_CHAIN),
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Source grew or changed (captions file, class folders or exported manifest; metadata only) -> "
    "embed the new images and re-mine the negatives incrementally. The cursor is the source's fingerprint.",
)
def source_growth(context: dg.SensorEvaluationContext, realrag: RealRagConfigResource):
    fingerprint = source_fingerprint(realrag.load().source)
    if fingerprint["digest"] == context.cursor:
        return dg.SkipReason(f"source unchanged ({fingerprint['entries']} entries checked)")
    context.update_cursor(fingerprint["digest"])
    return dg.RunRequest(
        run_key=f"source-{fingerprint['digest']}",
        asset_selection=GROWTH_CHAIN,
        tags={"realrag/trigger": "source_growth"},
    )


retrain_job = dg.define_asset_job(
    "retrain_retrievers",
    selection=dg.AssetSelection.assets("retriever", "contrastive_retriever"),
    executor_def=dg.in_process_executor,
    description="Both retrievers on the current negatives and table.",
)

retrain_schedule = dg.ScheduleDefinition(
    name="retrain_retrievers_schedule",
    job=retrain_job,
    cron_schedule=location_operations().retrain_cron,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrains the retrievers on operations.retrain_cron (turn on in the UI's Automation page).",
)


@dg.sensor(
    asset_selection=dg.AssetSelection.assets("human_eval"),
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New votes in the current human study -> score it again (human_eval). The cursor is "
    "<study>:<votes>; turn on in the UI's Automation page while a study runs.",
)
def human_eval_votes(context: dg.SensorEvaluationContext, realrag: RealRagConfigResource):
    state = votes_state(realrag.load(), realrag.store())
    if state is None:
        return dg.SkipReason("no human study yet: materialize human_eval_tasks")
    if state == context.cursor or state.endswith(":0"):
        return dg.SkipReason(f"no new votes ({state})")
    context.update_cursor(state)
    return dg.RunRequest(run_key=f"votes-{state}", asset_selection=[dg.AssetKey("human_eval")])
