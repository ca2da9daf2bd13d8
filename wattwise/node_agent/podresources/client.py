"""Which pod/container holds which GPU, from the kubelet PodResources API (v1 `List` over a unix socket).

The NVIDIA device plugin allocates `nvidia.com/gpu` by device ID. Depending on its configuration an ID is a
GPU UUID (the default), a GPU UUID with a replica suffix (`GPU-...::3` when the GPU is time-sliced or shared
through MPS), a MIG device UUID (`MIG-...`), or the GPU's index (`DEVICE_ID_STRATEGY=index`). `attribute`
resolves all but MIG to the GPU's UUID; MIG devices are not resolved to their parent GPU (power limits are
per physical GPU) and are left out.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping

import grpc

from wattwise.node_agent.podresources import api_pb2, api_pb2_grpc
from wattwise.telemetry.messages import PodRef

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCES = frozenset({"nvidia.com/gpu"})


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceAssignment:
    """One device ID of one container, as the kubelet reports it."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


class PodResourcesError(RuntimeError):
    """The kubelet socket could not be read (missing, permission, timeout, or the call failed)."""


class PodResourcesClient:
    """A small synchronous client, with a channel per call.

    The agent lists every 10 s; between two calls an open gRPC channel keeps gRPC's event-engine threads waking
    about 20 times a second, some 0.1% of a core on every GPU node, far more than connecting to the local socket
    for each call costs.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout_s: float = 1.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def list(self) -> list[DeviceAssignment]:
        channel = grpc.insecure_channel(f"unix://{self.socket_path}")
        try:
            stub = api_pb2_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
            response: api_pb2.ListPodResourcesResponse = stub.List(
                api_pb2.ListPodResourcesRequest(), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise PodResourcesError(
                f"PodResources List on {self.socket_path}: {exc.code().name}: {exc.details()}"
            ) from exc
        finally:
            channel.close()
        return [
            DeviceAssignment(pod.namespace, pod.name, container.name, devices.resource_name, device_id)
            for pod in response.pod_resources
            for container in pod.containers
            for devices in container.devices
            for device_id in devices.device_ids
        ]


def gpu_uuid_for(device_id: str, uuid_by_index: Mapping[int, str]) -> str | None:
    """The physical GPU's UUID a device-plugin ID refers to, or None (MIG, or an index with no GPU)."""
    base = device_id.split("::", 1)[0]
    if base.startswith("GPU-"):
        return base
    if base.isdigit():
        return uuid_by_index.get(int(base))
    return None


def attribute(
    assignments: Iterable[DeviceAssignment],
    uuid_by_index: Mapping[int, str],
    resources: frozenset[str] = GPU_RESOURCES,
) -> dict[str, list[PodRef]]:
    """Pods by GPU UUID, each listed once, sorted (several pods share a GPU when it is time-sliced)."""
    pods: dict[str, set[tuple[str, str, str]]] = collections.defaultdict(set)
    for a in assignments:
        if a.resource not in resources:
            continue
        uuid = gpu_uuid_for(a.device_id, uuid_by_index)
        if uuid is not None:
            pods[uuid].add((a.namespace, a.pod, a.container))
    return {uuid: [PodRef(namespace=n, pod=p, container=c) for n, p, c in sorted(refs)] for uuid, refs in pods.items()}
