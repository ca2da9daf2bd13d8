"""Objects tests put into the control plane: kwok GPU nodes, ServiceAccount tokens, and their cleanup.

No kube-controller-manager runs, so nothing is garbage-collected for us: `Cleanup` deletes exactly what a test
registered, with a zero grace period (no kubelet will confirm a pod's termination) and, for namespaces, by
clearing the finalizer the namespace controller would have cleared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.support.cluster_config import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE

DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
RACK_LABEL = "topology.wattwise.dev/rack"
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_TAINT = {"key": KWOK_NODE_ANNOTATION, "value": KWOK_NODE_ANNOTATION_VALUE, "effect": "NoSchedule"}


def gpu_node_manifest(
    name: str,
    gpus: int = 8,
    product: str = DEFAULT_GPU_PRODUCT,
    *,
    rack: str | None = None,
    zone: str | None = None,
    labels: Mapping[str, str] | None = None,
    kwok_taint: bool = False,
    cpu: str = "96",
    memory: str = "1024Gi",
) -> dict[str, Any]:
    """A Node that kwok manages (by annotation) with `gpus` allocatable GPUs and GPU feature-discovery labels.

    Taint-free by default, since every node here is simulated; `kwok_taint=True` adds kwok's usual
    `kwok.x-k8s.io/node=fake:NoSchedule` for tests that want pods to opt in with a toleration.
    """
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/gpu": "",
        "type": "kwok",
        GPU_PRODUCT_LABEL: product,
        GPU_COUNT_LABEL: str(gpus),
        "nvidia.com/gpu.present": "true",
    }
    if rack is not None:
        node_labels[RACK_LABEL] = rack
    if zone is not None:
        node_labels[ZONE_LABEL] = zone
    node_labels.update(labels or {})
    resources = {"cpu": cpu, "memory": memory, "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [KWOK_TAINT] if kwok_taint else []},
        "status": {"allocatable": resources, "capacity": resources},
    }


def node_ready(core: client.CoreV1Api, name: str) -> bool:
    status = core.read_node(name).status
    conditions = (status.conditions if status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_for(predicate: Any, what: str, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(interval)


def ensure_namespace(core: client.CoreV1Api, name: str) -> bool:
    """Create the namespace if absent; True when this call created it."""
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise
        return False
    return True


def service_account_token(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    *,
    audiences: tuple[str, ...] = (),
    expiration_seconds: int = 3600,
    bound_pod: str | None = None,
) -> str:
    """A TokenRequest token for ServiceAccount `namespace/name` (created if missing), verifiable by TokenReview.

    `bound_pod` binds the token to a pod of that namespace, as a projected volume token is; when the pod is
    bound to a node the token also carries the node's name, which is what lets the operator tie an agent's
    report to the node it runs on. Empty `audiences` means the API server's own.
    """
    ensure_namespace(core, namespace)
    with contextlib.suppress(ApiException):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    spec = client.V1TokenRequestSpec(audiences=list(audiences), expiration_seconds=expiration_seconds)
    if bound_pod is not None:
        meta = core.read_namespaced_pod(bound_pod, namespace).metadata
        uid = meta.uid if meta else None
        spec.bound_object_ref = client.V1BoundObjectReference(api_version="v1", kind="Pod", name=bound_pod, uid=uid)
    answer = core.create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest(spec=spec)
    )
    if answer.status is None or not answer.status.token:
        raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
    return answer.status.token


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class Cleanup:
    """Deletes, in reverse order, every object registered with `add` (missing ones are fine)."""

    def __init__(self, api_client: ApiClient) -> None:
        self._api = api_client
        self._refs: list[ObjectRef] = []
        self._plurals: dict[tuple[str, str], tuple[str, bool]] = {}

    def add(self, obj: Any) -> Any:
        """Register an object (a dict or a client model, as returned by create) and hand it back."""
        data = obj if isinstance(obj, Mapping) else self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        meta = data["metadata"]
        self._refs.append(ObjectRef(data["apiVersion"], data["kind"], meta["name"], meta.get("namespace")))
        return obj

    def add_ref(self, ref: ObjectRef) -> None:
        self._refs.append(ref)

    def run(self) -> None:
        errors = []
        while self._refs:
            ref = self._refs.pop()
            try:
                self._delete(ref)
            except ApiException as error:
                errors.append(f"{ref.kind} {ref.name}: {error.status} {error.reason}")
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))

    def _delete(self, ref: ObjectRef) -> None:
        path = self._path(ref)
        try:
            self._call("DELETE", path, query=[("gracePeriodSeconds", "0"), ("propagationPolicy", "Background")])
        except ApiException as error:
            if error.status == 404:
                return
            raise
        if ref.kind == "Namespace":
            # The namespace controller would empty it and drop this finalizer; here nobody will.
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ref.name}, "spec": {"finalizers": []}}
            with contextlib.suppress(ApiException):
                self._call("PUT", f"{path}/finalize", body=body)

    def _path(self, ref: ObjectRef) -> str:
        plural, namespaced = self._resource(ref.api_version, ref.kind)
        base = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
        if namespaced:
            return f"{base}/namespaces/{ref.namespace}/{plural}/{ref.name}"
        return f"{base}/{plural}/{ref.name}"

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key not in self._plurals:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = self._call("GET", base)
            for resource in listing["resources"]:
                if "/" not in resource["name"]:
                    self._plurals[(api_version, resource["kind"])] = (resource["name"], resource["namespaced"])
        return self._plurals[key]

    def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None) -> Any:
        return rest_call(self._api, method, path, query=query, body=body)


def rest_call(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    """One raw API request (any path, any verb) with the client's credentials; the decoded JSON answer.

    For what the generated client has no method for: discovery, `finalize`, server-side apply with a chosen
    content type. Non-2xx answers raise `ApiException`, as the generated methods do.
    """
    request = api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    data: bytes = response.read()  # type: ignore[no-untyped-call]
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=data.decode(errors="replace"), data=None)
    return json.loads(data) if data else None
