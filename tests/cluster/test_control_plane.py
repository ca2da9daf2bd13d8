"""The control plane behaves like a cluster: version, authentication, RBAC, kwok nodes, both schedulers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.cluster_objects import (
    GPU_PRODUCT_LABEL,
    RACK_LABEL,
    Cleanup,
    ObjectRef,
    ensure_namespace,
    rest_call,
    wait_for,
)
from tests.support.controlplane import ControlPlane, KubeApi, MakeGpuNode

pytestmark = pytest.mark.cluster


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _namespace(kube_api: KubeApi, cleanup: Cleanup, prefix: str) -> str:
    name = _unique(prefix)
    ensure_namespace(kube_api.core, name)
    cleanup.add_ref(ObjectRef("v1", "Namespace", name))
    return name


def _gpu_pod(name: str, scheduler: str = "default-scheduler") -> dict[str, Any]:
    container = {"name": "c", "image": "example.invalid/none", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    return {"metadata": {"name": name}, "spec": {"schedulerName": scheduler, "containers": [container]}}


def test_version_is_stamped(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server, kubectl = version["serverVersion"], version["clientVersion"]
    assert server["gitVersion"] == kubectl["gitVersion"]
    assert server["gitVersion"].startswith("v1.")
    assert server["minor"] == server["gitVersion"].split(".")[1]


def test_service_account_token_passes_token_review(
    control_plane: ControlPlane, kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    namespace = _namespace(kube_api, k8s_cleanup, "tokens")
    token = control_plane.service_account_token(namespace, "agent")

    def review(candidate: str) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": candidate}}
        answer: dict[str, Any] = rest_call(
            kube_api.api_client, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body
        )
        status: dict[str, Any] = answer["status"]
        return status

    genuine = review(token)
    assert genuine["authenticated"] is True
    assert genuine["user"]["username"] == f"system:serviceaccount:{namespace}:agent"
    assert not review(token[:-4] + "AAAA").get("authenticated")


def test_pod_bound_token_names_the_node(
    control_plane: ControlPlane, make_gpu_node: MakeGpuNode, kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    """What an agent presents: a token bound to its pod, which TokenReview resolves to the pod's node."""
    namespace = _namespace(kube_api, k8s_cleanup, "agent")
    node = make_gpu_node(_unique("gpu"), gpus=1)
    # No ServiceAccount admission here, so the pod names its account itself (nothing defaults it to "default").
    spec = {"nodeName": node, "serviceAccountName": "agent", "containers": [{"name": "a", "image": "x"}]}
    pod = {"metadata": {"name": "agent"}, "spec": spec}
    k8s_cleanup.add(rest_call(kube_api.api_client, "POST", f"/api/v1/namespaces/{namespace}/pods", body=pod))
    token = control_plane.service_account_token(namespace, "agent", bound_pod="agent", audiences=("wattwise",))

    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": ["wattwise"]}}  # fmt: skip
    review = rest_call(kube_api.api_client, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/node-name"] == [node]
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["agent"]


def test_rbac_is_enforced_for_service_accounts(
    control_plane: ControlPlane, kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    namespace = _namespace(kube_api, k8s_cleanup, "rbac")
    config = control_plane.kubeconfig_for_token(control_plane.service_account_token(namespace, "reader"), "reader")

    denied = control_plane.kubectl("get", "nodes", kubeconfig=config, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    role = f"{namespace}-node-reader"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    k8s_cleanup.add(rest_call(kube_api.api_client, "POST", f"{rbac}/clusterroles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}],
    }))  # fmt: skip
    k8s_cleanup.add(rest_call(kube_api.api_client, "POST", f"{rbac}/clusterrolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }))  # fmt: skip
    wait_for(
        lambda: control_plane.kubectl("get", "nodes", kubeconfig=config, check=False).returncode == 0,
        "the binding never took effect",
        timeout=10,
    )


def test_kwok_gpu_node_becomes_ready_with_gpus(make_gpu_node: MakeGpuNode, kube_api: KubeApi) -> None:
    name = make_gpu_node(_unique("gpu"), gpus=4, rack="a1", zone="z1")
    node = rest_call(kube_api.api_client, "GET", f"/api/v1/nodes/{name}")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert node["metadata"]["labels"][RACK_LABEL] == "a1"
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert not node["spec"].get("taints")


def test_default_scheduler_places_a_gpu_pod_on_a_kwok_node(
    make_gpu_node: MakeGpuNode, kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    node = make_gpu_node(_unique("gpu"), gpus=2)
    pods = "/api/v1/namespaces/default/pods"
    pod = k8s_cleanup.add(rest_call(kube_api.api_client, "POST", pods, body=_gpu_pod(_unique("gpu-pod"))))

    def running() -> bool:
        current = rest_call(kube_api.api_client, "GET", f"{pods}/{pod['metadata']['name']}")
        return bool(current["spec"].get("nodeName") == node and current["status"].get("phase") == "Running")

    wait_for(running, "pod not scheduled and Running on the kwok node", timeout=30)


def test_wattwise_scheduler_asks_the_extender(
    control_plane: ControlPlane, make_gpu_node: MakeGpuNode, kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    """With no extender listening, a GPU pod for `wattwise-scheduler` stays Pending (ignorable: false) and the
    scheduler reports the extender URL it tried: proof the stanza is live and points where tests serve."""
    make_gpu_node(_unique("gpu"), gpus=1)
    pods = "/api/v1/namespaces/default/pods"
    body = _gpu_pod(_unique("ext-pod"), scheduler="wattwise-scheduler")
    pod = k8s_cleanup.add(rest_call(kube_api.api_client, "POST", pods, body=body))
    log = control_plane.logs()["wattwise-scheduler"]
    url = control_plane.extender_url.rstrip("/") + "/filter"
    wait_for(lambda: url in log.read_text(errors="replace"), f"the scheduler never called {url}", timeout=30)
    current = rest_call(kube_api.api_client, "GET", f"{pods}/{pod['metadata']['name']}")
    assert not current["spec"].get("nodeName")


def test_cleanup_removes_a_namespace_without_a_controller_manager(
    kube_api: KubeApi, control_plane: ControlPlane
) -> None:
    cleanup = Cleanup(control_plane.api_client)
    namespace = _namespace(kube_api, cleanup, "gone")
    cleanup.run()
    with pytest.raises(ApiException) as missing:
        kube_api.core.read_namespace(namespace)
    assert missing.value.status == 404
