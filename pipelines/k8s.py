"""Kubernetes: the main job's stages as Kubernetes Jobs through dagster-k8s's ``k8s_job_executor``.

Optional (``pip install -e ".[k8s]"``): without dagster-k8s the job is simply not defined. Every asset in
the ``gpu`` pool gets a GPU request on its step pod; the image, namespace, artifacts volume and the
environment variables every step needs come from the environment of the code location:

  REALRAG_K8S_IMAGE      the image with this repository installed (default realrag:latest)
  REALRAG_K8S_NAMESPACE  namespace of the step jobs (default realrag)
  REALRAG_K8S_PVC        a ReadWriteMany claim mounted at /data: artifacts, LanceDB and the profile
                         (default realrag-artifacts); or put artifacts_root on object storage instead
  REALRAG_K8S_GPUS       GPUs per heavy step (default 1)
  REALRAG_K8S_CONFIG     the profile's path inside the pods, given to them as REALRAG_CONFIG
                         (default /data/profile.yaml)
  REALRAG_K8S_SECRET     a Kubernetes Secret whose keys become environment variables (HF_TOKEN, AWS_...)

Launch with a ``K8sRunLauncher`` instance (the Dagster Helm chart sets one up)."""

import os

import dagster as dg

from assets.partitions import ALL_SHARDS

MOUNT_PATH = "/data"


def gpu_steps(assets) -> list[str]:
    """Op names of the assets in the ``gpu`` pool (the torch-heavy stages)."""
    return sorted({a.node_def.name for a in assets if a.op.pool == "gpu"})


def executor_config(assets, environ=os.environ) -> dict:
    gpus = int(environ.get("REALRAG_K8S_GPUS", "1"))
    quantity = str(gpus)  # Kubernetes quantities are strings
    gpu = {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": quantity}, "requests": {"nvidia.com/gpu": quantity}}
        }
    }
    return {
        "job_image": environ.get("REALRAG_K8S_IMAGE", "realrag:latest"),
        "job_namespace": environ.get("REALRAG_K8S_NAMESPACE", "realrag"),
        "env_vars": [f"REALRAG_CONFIG={environ.get('REALRAG_K8S_CONFIG', MOUNT_PATH + '/profile.yaml')}"],
        "env_secrets": [environ["REALRAG_K8S_SECRET"]] if environ.get("REALRAG_K8S_SECRET") else [],
        "volumes": [
            {
                "name": "artifacts",
                "persistent_volume_claim": {"claim_name": environ.get("REALRAG_K8S_PVC", "realrag-artifacts")},
            }
        ],
        "volume_mounts": [{"name": "artifacts", "mount_path": MOUNT_PATH}],
        "per_step_k8s_config": {name: gpu for name in gpu_steps(assets)} if gpus else {},
    }


def k8s_job(assets):
    """The ``realrag_k8s`` job (every stage, every prompt shard, one Kubernetes Job per step), or None without
    dagster-k8s."""
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError:
        return None
    return dg.define_asset_job(
        "realrag_k8s",
        selection=dg.AssetSelection.all(),
        tags=ALL_SHARDS,
        executor_def=k8s_job_executor.configured(executor_config(assets), name="realrag_k8s_executor"),
        description="Every RealRAG stage as Kubernetes Jobs (dagster-k8s), a GPU per torch-heavy step.",
    )
