"""Fixtures for the node agent tests: agents over the fake pynvml or the simulated GPUs, on a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.node_agent.fakes import FakeGpu, FakeNvml, ManualClock
from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.metrics import AgentCollector

UUIDS = [f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd" for i in range(4)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake_agent(clock: ManualClock) -> Iterator[Callable[..., tuple[NodeAgent, FakeNvml, AgentCollector]]]:
    """Build a started agent over a FakeNvml; closed (limits restored) at the end of the test."""
    made: list[NodeAgent] = []

    def make(gpus: list[FakeGpu] | None = None, **kwargs: object) -> tuple[NodeAgent, FakeNvml, AgentCollector]:
        lib = FakeNvml(gpus if gpus is not None else [FakeGpu(u) for u in UUIDS[:2]])
        agent = NodeAgent(AgentConfig(node="node-a"), NvmlBackend(lib, clock=clock), clock=clock, **kwargs)  # type: ignore[arg-type]
        agent.start()
        made.append(agent)
        return agent, lib, AgentCollector("node-a", lambda: agent.snapshot)

    yield make
    for agent in made:
        agent.close()
