"""Celery: the main job's steps as Celery tasks on worker processes (dagster-celery's ``celery_executor``), with
Redis (or any Celery broker) in between. Workers can run on other machines that see the same Dagster instance
(its storage), the same profile and the same artifacts (a shared folder, or object storage: README "Scaling out").

Optional (``pip install -e ".[celery]"``): without dagster-celery the job is simply not defined.

  REALRAG_CELERY_BROKER   broker URL, e.g. redis://host:6379/0 (default redis://localhost:6379/0)
  REALRAG_CELERY_BACKEND  result backend URL (default: the broker's)

A worker, one per GPU (``--pool solo``: a step runs in the worker process itself, torch is imported once)::

  celery -A pipelines.celery_engine worker -Q dagster --pool solo --prefetch-multiplier=1 -n gpu0@%h

This module is also that worker's Celery app (``app``): dagster-celery's task, bound to the same broker and
backend as the executor."""

import os

import dagster as dg

from assets.partitions import ALL_SHARDS

DEFAULT_BROKER = "redis://localhost:6379/0"


def executor_config(environ=os.environ) -> dict:
    broker = environ.get("REALRAG_CELERY_BROKER", DEFAULT_BROKER)
    return {"broker": broker, "backend": environ.get("REALRAG_CELERY_BACKEND", broker)}


def celery_job():
    """The ``realrag_celery`` job (every stage, every prompt shard, each step a Celery task), or None without
    dagster-celery."""
    try:
        from dagster_celery import celery_executor
    except ImportError:
        return None
    return dg.define_asset_job(
        "realrag_celery",
        selection=dg.AssetSelection.all(),
        tags=ALL_SHARDS,
        executor_def=celery_executor.configured(executor_config(), name="realrag_celery_executor"),
        description="Every RealRAG stage as Celery tasks (dagster-celery) on the workers listening on the broker.",
    )


def _worker_app():
    try:
        from dagster_celery.executor import CeleryExecutor
        from dagster_celery.make_app import make_app
        from dagster_celery.tasks import create_task
    except ImportError:
        return None
    celery_app = make_app(CeleryExecutor.for_cli(**executor_config()).app_args())
    create_task(celery_app)  # registers the step task the executor sends
    return celery_app


app = _worker_app()
