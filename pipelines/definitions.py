"""The code location: every asset, its checks, the resource, and the main job."""

from __future__ import annotations

import dagster as dg

from assets.checks import ALL_CHECKS
from assets.clip_backbone import clip_backbone
from assets.fid import fid
from assets.generated_images import generated_images
from assets.generator import generator
from assets.human_eval import human_eval_tasks
from assets.human_eval_results import human_eval
from assets.image_embeddings import image_embeddings
from assets.image_source import image_source
from assets.judge import judge
from assets.prompts import prompts
from assets.rag_images import rag_images
from assets.reflective_negatives import reflective_negatives
from assets.retriever import contrastive_retriever, retriever, retriever_ablations
from assets.world_splits import world_splits
from pipelines.celery_engine import celery_job
from pipelines.k8s import k8s_job
from assets.partitions import ALL_SHARDS
from assets.resources import RealRagConfigResource
from pipelines.sensors import human_eval_votes, retrain_job, retrain_schedule, source_growth

ALL_ASSETS = [
    image_source,
    world_splits,
    prompts,
    clip_backbone,
    judge,
    generator,
    image_embeddings,
    generated_images,
    reflective_negatives,
    retriever,
    contrastive_retriever,
    retriever_ablations,
    rag_images,
    fid,
    human_eval_tasks,
    human_eval,
]

# The main job: every stage, in one process (each step would otherwise re-import torch: 26 s vs 7 s), and
# every prompt shard of the partitioned stages in that one run (its tags select the whole shard range).
realrag_job = dg.define_asset_job(
    "realrag",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    tags=ALL_SHARDS,
    description="Every RealRAG stage on the configured profile ($REALRAG_CONFIG, default configs/demo.yaml), every "
    "prompt shard in one run.",
)

# The same, each step in its own process (Dagster's multiprocess executor): independent stages run side by side;
# the `gpu` pool still lets one torch-heavy step run at a time (dagster.yaml). Same results (tested). Steps fork
# from a forkserver that has imported the definitions and the libraries the kernels load on first use (torch,
# open_clip, diffusers, torchmetrics) once, instead of each step process importing them again (spawn). lancedb is
# left to each step: its runtime warns about forked processes.
STEP_PRELOAD = ["torch", "open_clip", "diffusers", "torchmetrics.image.fid", "torchmetrics.image.kid"]
realrag_multiprocess_job = dg.define_asset_job(
    "realrag_multiprocess",
    selection=dg.AssetSelection.all(),
    executor_def=dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": [*STEP_PRELOAD, "pipelines.definitions"]}}}
    ),
    tags=ALL_SHARDS,
    description="Every RealRAG stage, each step in its own process (needs a persistent instance: DAGSTER_HOME).",
)

# The same stages as Kubernetes Jobs (dagster-k8s), when it is installed: README "Scaling out"
realrag_k8s_job = k8s_job(ALL_ASSETS)
# ... and as Celery tasks on workers behind a broker (dagster-celery, Redis), when it is installed
realrag_celery_job = celery_job()

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[realrag_job, realrag_multiprocess_job, retrain_job, *(j for j in (realrag_k8s_job, realrag_celery_job) if j)],
    sensors=[source_growth, human_eval_votes],
    schedules=[retrain_schedule],
    resources={"realrag": RealRagConfigResource()},
    executor=dg.in_process_executor,
)
