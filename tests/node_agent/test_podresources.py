"""Pod attribution over a real gRPC server speaking the kubelet's PodResources v1 proto on a unix socket."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.node_agent.fakes import FakeGpu, FakeNvml, ManualClock
from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.metrics import AgentCollector
from wattwise.node_agent.podresources import api_pb2, api_pb2_grpc
from wattwise.node_agent.podresources.client import (
    DeviceAssignment,
    PodResourcesClient,
    PodResourcesError,
    attribute,
    gpu_uuid_for,
)
from wattwise.telemetry.messages import PodRef

GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
GPU_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"


def pod(namespace: str, name: str, containers: dict[str, list[tuple[str, list[str]]]]) -> api_pb2.PodResources:
    return api_pb2.PodResources(
        name=name,
        namespace=namespace,
        containers=[
            api_pb2.ContainerResources(
                name=c, devices=[api_pb2.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devs]
            )
            for c, devs in containers.items()
        ],
    )


class Kubelet(api_pb2_grpc.PodResourcesListerServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.pods: list[api_pb2.PodResources] = []
        self.calls = 0

    def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:
        self.calls += 1
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


@pytest.fixture
def kubelet(tmp_path: pathlib.Path) -> Iterator[tuple[Kubelet, str]]:
    sock = str(tmp_path / "kubelet.sock")
    service = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(service, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield service, sock
    server.stop(grace=None).wait()


def test_list_over_the_socket(kubelet: tuple[Kubelet, str]) -> None:
    service, sock = kubelet
    service.pods = [
        pod("llm", "chat-0", {"server": [("nvidia.com/gpu", [GPU_A]), ("example.com/nic", ["nic0"])]}),
        pod("batch", "embed-1", {"worker": [("nvidia.com/gpu", [f"{GPU_B}::0"])]}),
    ]
    got = PodResourcesClient(sock).list()
    assert DeviceAssignment("llm", "chat-0", "server", "nvidia.com/gpu", GPU_A) in got
    assert DeviceAssignment("llm", "chat-0", "server", "example.com/nic", "nic0") in got
    assert attribute(got, {}) == {
        GPU_A: [PodRef(namespace="llm", pod="chat-0", container="server")],
        GPU_B: [PodRef(namespace="batch", pod="embed-1", container="worker")],
    }


def test_a_restarted_kubelet_answers_the_next_call(tmp_path: pathlib.Path) -> None:
    """No channel is kept between calls (an idle gRPC channel keeps threads waking): the call after a kubelet
    restart connects afresh, with no reconnect back-off to wait out."""
    sock = str(tmp_path / "kubelet.sock")
    client = PodResourcesClient(sock, timeout_s=0.5)
    for gpu in (GPU_A, GPU_B):  # one kubelet, then its successor on the same socket
        service = Kubelet()
        service.pods = [pod("llm", "chat-0", {"server": [("nvidia.com/gpu", [gpu])]})]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(service, server)
        server.add_insecure_port(f"unix://{sock}")
        server.start()
        try:
            assert [a.device_id for a in client.list()] == [gpu]
        finally:
            server.stop(grace=None).wait()
        with pytest.raises(PodResourcesError):  # the kubelet is gone
            client.list()


def test_missing_socket_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    client = PodResourcesClient(str(tmp_path / "absent.sock"), timeout_s=0.5)
    with pytest.raises(PodResourcesError, match=r"absent\.sock"):
        client.list()


@pytest.mark.parametrize(
    ("device_id", "expected"),
    [
        (GPU_A, GPU_A),
        (f"{GPU_A}::3", GPU_A),  # time-sliced replica
        ("1", GPU_B),  # DEVICE_ID_STRATEGY=index
        ("7", None),  # index with no such GPU
        ("MIG-11111111-2222-3333-4444-555555555555", None),  # MIG: not resolved to its parent
    ],
)
def test_device_ids(device_id: str, expected: str | None) -> None:
    assert gpu_uuid_for(device_id, {0: GPU_A, 1: GPU_B}) == expected


def test_shared_gpu_lists_every_pod_once() -> None:
    a = [DeviceAssignment("ns", p, "c", "nvidia.com/gpu", f"{GPU_A}::{i}") for i, p in enumerate(["b", "a", "b"])]
    assert [r.pod for r in attribute(a, {})[GPU_A]] == ["a", "b"]


def test_agent_labels_metrics_with_pods_and_reports_kubelet_outages(kubelet: tuple[Kubelet, str]) -> None:
    service, sock = kubelet
    service.pods = [pod("llm", "chat-0", {"server": [("nvidia.com/gpu", [GPU_A])]})]
    clock = ManualClock()
    backend = NvmlBackend(FakeNvml([FakeGpu(GPU_A), FakeGpu(GPU_B)]), clock=clock)
    agent = NodeAgent(AgentConfig(node="n1", pods_interval_s=10), backend, pods=PodResourcesClient(sock), clock=clock)
    agent.start()
    collector = AgentCollector("n1", lambda: agent.snapshot)
    try:
        agent.tick()
        labels = {
            s.labels["uuid"]: (s.labels["namespace"], s.labels["pod"])
            for fam in collector.collect()
            for s in fam.samples
            if s.name == "wattwise_gpu_power_watts"
        }
        assert labels == {GPU_A: ("llm", "chat-0"), GPU_B: ("", "")}
        assert agent.snapshot.pods_known
        clock.advance(1)
        agent.tick()
        assert service.calls == 1  # polled every pods_interval_s, not every second
        agent.pods_client.socket_path = sock + ".gone"  # type: ignore[union-attr]
        clock.advance(10)
        agent.tick()
        assert not agent.snapshot.pods_known
        assert [i.code for i in agent.snapshot.issues] == ["PodResourcesUnavailable"]
        assert agent.snapshot.pods[GPU_A][0].pod == "chat-0"  # last known attribution is kept
    finally:
        agent.close()
