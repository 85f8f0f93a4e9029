"""The KubernetesExecutor's pod override for training tasks: a GPU limit, the GPU nodes' labels and taints.

Under the KubernetesExecutor every task runs in a pod made from the chart's pod template; a task's
`executor_config={"pod_override": V1Pod}` is merged into it (the container to change is named "base").
Training asks for `nvidia.com/gpu`, runs only on nodes with the configured labels and tolerates their taint.
The values come from the settings (REPLYLOOP_K8S_GPU_*). Under any other executor the override means
nothing, so the kubernetes client (a second to import) is not loaded while the DAG file is parsed.
"""

from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"
BASE_CONTAINER = "base"  # the KubernetesExecutor's task container


def uses_kubernetes_executor() -> bool:
    from airflow.sdk import conf

    return "KubernetesExecutor" in conf.get("core", "executor", fallback="")


def gpu_pod_override(settings=None):
    """The V1Pod merged into a training task's pod."""
    from kubernetes.client import models as k8s

    if settings is None:
        from replyloop.settings import get_settings

        settings = get_settings()
    resources = {GPU_RESOURCE: str(settings.k8s_gpu_count), "memory": settings.k8s_gpu_memory}
    return k8s.V1Pod(spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name=BASE_CONTAINER,
                                    resources=k8s.V1ResourceRequirements(limits=resources, requests=resources))],
        node_selector=dict(settings.k8s_gpu_node_selector),
        tolerations=[k8s.V1Toleration(**t) for t in settings.k8s_gpu_tolerations],
    ))


def gpu_executor_config() -> dict:
    """`executor_config` for a task on queue `gpu`: the pod override under the KubernetesExecutor, else {}."""
    return {"pod_override": gpu_pod_override()} if uses_kubernetes_executor() else {}
