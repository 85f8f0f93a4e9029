"""Kubernetes: the training task's pod override under the KubernetesExecutor, and the Helm values that
configure it. No cluster runs here: the override is checked as the scheduler sees it (after Airflow's own
serialization of the DAG), and the values file against the settings and the DAGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "deploy" / "helm" / "values.yaml"


@pytest.fixture
def k8s_dags(monkeypatch):
    """The DAGs as a KubernetesExecutor deployment parses them, then serialized and read back (the scheduler's view)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    from replyloop.settings import get_settings

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "KubernetesExecutor")
    get_settings.cache_clear()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    yield {dag_id: DagSerialization.from_dict(DagSerialization.to_dict(dag)) for dag_id, dag in bag.dags.items()}
    get_settings.cache_clear()


def _limits(pod) -> dict:
    [container] = pod.spec.containers
    assert container.name == "base"  # the KubernetesExecutor's task container, the one the override merges into
    return container.resources.limits


def test_the_training_task_carries_the_gpu_pod_override(k8s_dags):
    from common.k8s import gpu_pod_override

    from replyloop.settings import get_settings

    train = k8s_dags["finetune_lora"].get_task("train")
    pod = train.executor_config["pod_override"]
    assert pod == gpu_pod_override(get_settings())
    assert _limits(pod)["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    [toleration] = pod.spec.tolerations
    assert (toleration.key, toleration.operator, toleration.effect) == ("nvidia.com/gpu", "Exists", "NoSchedule")
    # no other task asks for a GPU
    others = {f"{d.dag_id}.{t.task_id}": t.executor_config for d in k8s_dags.values() for t in d.tasks
              if (d.dag_id, t.task_id) != ("finetune_lora", "train")}
    assert all(not cfg for cfg in others.values()), others


def test_the_override_follows_the_settings():
    from common.k8s import gpu_pod_override

    from replyloop.settings import Settings

    settings = Settings(k8s_gpu_count=4, k8s_gpu_node_selector={"cloud.example.com/accelerator": "a100"},
                        k8s_gpu_tolerations=[{"key": "dedicated", "operator": "Equal", "value": "training",
                                              "effect": "NoSchedule"}])
    pod = gpu_pod_override(settings)
    assert _limits(pod)["nvidia.com/gpu"] == "4"
    assert pod.spec.node_selector == {"cloud.example.com/accelerator": "a100"}
    assert pod.spec.tolerations[0].value == "training"


def test_other_executors_carry_no_override():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))  # the test session's LocalExecutor
    assert bag.dags["finetune_lora"].get_task("train").executor_config == {}


def test_the_helm_values_configure_the_same_override(monkeypatch):
    from common.k8s import gpu_pod_override

    from replyloop.settings import Settings

    values = yaml.safe_load(VALUES.read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["config"]["core"]["dags_folder"] == "/opt/replyloop/dags"  # docker/Dockerfile's layout
    env = {e["name"]: e["value"] for e in values["env"]}
    known = {f"REPLYLOOP_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("REPLYLOOP_")} <= known, "a REPLYLOOP_ variable that no setting reads"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from_values = Settings()
    assert gpu_pod_override(from_values) == gpu_pod_override(Settings(
        k8s_gpu_count=int(env["REPLYLOOP_K8S_GPU_COUNT"]), k8s_gpu_memory=env["REPLYLOOP_K8S_GPU_MEMORY"],
        k8s_gpu_node_selector=json.loads(env["REPLYLOOP_K8S_GPU_NODE_SELECTOR"]),
        k8s_gpu_tolerations=json.loads(env["REPLYLOOP_K8S_GPU_TOLERATIONS"])))
    assert _limits(gpu_pod_override(from_values))["nvidia.com/gpu"] == "1"
    from common.runtime import LAKE_CONN_ID

    assert {s["envName"] for s in values["secret"]} >= {f"AIRFLOW_CONN_{LAKE_CONN_ID.upper()}"}
    assert values["jwtSecretName"] and values["data"]["metadataSecretName"]
