"""The Kubernetes job: step Job specs built by dagster-k8s's own step handler (its API client replaced by a
recorder, so nothing needs a cluster): image, namespace, environment, the artifacts volume, and a GPU request
on exactly the torch-heavy steps."""

from unittest import mock

import pytest

pytest.importorskip("dagster_k8s", reason="dagster-k8s is in the dev extra; this checks the optional k8s job")

from dagster import reconstructable  # noqa: E402
from dagster._core.execution.api import create_execution_plan  # noqa: E402
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext  # noqa: E402
from dagster._core.execution.context_creation_job import create_context_free_log_manager  # noqa: E402
from dagster._core.execution.retries import RetryMode  # noqa: E402
from dagster._core.executor.init import InitExecutorContext  # noqa: E402
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext  # noqa: E402
from dagster._core.test_utils import create_run_for_test, instance_for_test  # noqa: E402
from dagster._grpc.types import ExecuteStepArgs  # noqa: E402
from dagster_k8s.client import DagsterKubernetesClient  # noqa: E402

from pipelines.k8s import MOUNT_PATH, executor_config, gpu_steps  # noqa: E402
from assets.partitions import ALL_SHARDS  # noqa: E402

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: test, user: {token: not-a-secret}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


def realrag_k8s():
    from pipelines.definitions import defs

    return defs.resolve_job_def("realrag_k8s")


def _launched_job(instance, recon, step_key):
    """What the k8s executor's step handler sends to the Kubernetes API for one step."""
    job_def = recon.get_definition()
    executor_def = job_def.executor_def
    processed = executor_def.apply_config_mapping({})  # the configuration the job carries, filled in by dagster
    assert processed.success, processed.errors
    executor = executor_def.executor_creation_fn(
        InitExecutorContext(
            job=recon, executor_def=executor_def, executor_config=processed.value["config"], instance=instance
        )
    )
    batch = mock.MagicMock()
    handler = executor._step_handler  # noqa: SLF001
    handler._api_client = DagsterKubernetesClient.production_client(batch_api_override=batch)  # noqa: SLF001
    run = create_run_for_test(
        instance, job_name="realrag_k8s", job_code_origin=recon.get_python_origin(), tags=ALL_SHARDS
    )
    plan = create_execution_plan(recon, tags=ALL_SHARDS)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(
            job=recon,
            dagster_run=run,
            instance=instance,
            execution_plan=plan,
            raise_on_error=True,
            retry_mode=RetryMode.DISABLED,
        ),
        log_manager=create_context_free_log_manager(instance, run),
        executor=executor,
        output_capture=None,
    )
    context = StepHandlerContext(
        instance=instance,
        plan_context=plan_context,
        steps=plan.steps,
        execute_step_args=ExecuteStepArgs(recon.get_python_origin(), run.run_id, [step_key]),
    )
    list(handler.launch_step(context))
    [(name, _, kwargs)] = [c for c in batch.method_calls if c[0] == "create_namespaced_job"]
    return kwargs["namespace"], kwargs["body"]


def test_step_jobs_carry_image_environment_volume_and_a_gpu_on_heavy_steps(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    launcher = {
        "service_account_name": "dagster",
        "instance_config_map": "dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "dagster-postgresql-secret",
        "job_image": "launcher-image",
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    recon = reconstructable(realrag_k8s)
    from pipelines.definitions import ALL_ASSETS

    heavy = gpu_steps(ALL_ASSETS)
    assert {"generated_images", "rag_images", "retriever", "image_embeddings"} <= set(heavy) and "prompts" not in heavy
    with instance_for_test(
        overrides={"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher}}
    ) as instance:
        for step in ("generated_images", "prompts"):
            namespace, job = _launched_job(instance, recon, step)
            pod = job.spec.template.spec
            [container] = pod.containers
            assert namespace == "realrag" and container.image == "realrag:latest"
            env = {e.name: e.value for e in container.env}
            assert env["REALRAG_CONFIG"] == f"{MOUNT_PATH}/profile.yaml" and env["DAGSTER_RUN_STEP_KEY"] == step
            [volume] = [v for v in pod.volumes if v.name == "artifacts"]
            assert volume.persistent_volume_claim.claim_name == "realrag-artifacts"
            assert [m.mount_path for m in container.volume_mounts if m.name == "artifacts"] == [MOUNT_PATH]
            limits = (container.resources.limits or {}) if container.resources else {}
            assert limits.get("nvidia.com/gpu") == ("1" if step in heavy else None)


def test_executor_config_follows_the_environment():
    from pipelines.definitions import ALL_ASSETS

    cfg = executor_config(
        ALL_ASSETS,
        {
            "REALRAG_K8S_IMAGE": "registry.example/realrag:1",
            "REALRAG_K8S_GPUS": "2",
            "REALRAG_K8S_PVC": "shared",
            "REALRAG_K8S_NAMESPACE": "ml",
            "REALRAG_K8S_SECRET": "hf",
            "REALRAG_K8S_CONFIG": "/data/cars.yaml",
        },
    )
    assert cfg["job_image"] == "registry.example/realrag:1" and cfg["job_namespace"] == "ml"
    assert cfg["volumes"][0]["persistent_volume_claim"]["claim_name"] == "shared"
    assert cfg["env_secrets"] == ["hf"] and cfg["env_vars"] == ["REALRAG_CONFIG=/data/cars.yaml"]
    limits = {
        k: v["container_config"]["resources"]["limits"]["nvidia.com/gpu"] for k, v in cfg["per_step_k8s_config"].items()
    }
    assert limits and set(limits.values()) == {"2"} and set(limits) == set(gpu_steps(ALL_ASSETS))
    assert executor_config(ALL_ASSETS, {"REALRAG_K8S_GPUS": "0"})["per_step_k8s_config"] == {}
