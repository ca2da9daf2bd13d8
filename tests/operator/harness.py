"""Running a whole operator and real node agents (sim backend) in-process against the test control plane.

`OperatorThread` runs `wattwise.operator.runtime.Operator` on its own event loop in a thread (what
`kopf.testing.KopfRunner` does for a plain kopf operator, but with our uvicorn server and control loop in the
same loop), on a free loopback port. `SimAgent` runs the real `NodeAgent` over `SimNvml` with the real
`Reporter`, a projected-style token (TokenRequest bound to an agent pod on the node) in a token file, and a
fixed PodResources answer standing in for the kubelet; it keeps the replies the agent received, as decoded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.podresources.client import DeviceAssignment
from wattwise.node_agent.reporter import Reporter
from wattwise.node_agent.simnvml import SimNvml
from wattwise.operator.runtime import Operator, OperatorConfig
from wattwise.telemetry import messages

T = TypeVar("T")


class OperatorThread:
    def __init__(self, config: OperatorConfig) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.config = config
        self.operator: Operator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.operator = Operator(self.config)
        self._ready.set()
        await self.operator.run(self._stop, sock=self._sock)

    def start(self) -> OperatorThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("operator failed to start") from self._error
        return self

    def call(self, fn: Callable[[Operator], T], timeout: float = 10.0) -> T:
        """Run `fn(operator)` on the operator's loop (state is only consistent there) and return its result."""
        assert self._loop is not None and self.operator is not None
        op = self.operator

        async def run() -> T:
            return fn(op)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        assert self._loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("operator thread did not stop within 60 s")


class FixedPods:
    """Stands in for the kubelet's PodResources API: GPU index -> (namespace, pod)."""

    def __init__(self, by_index: dict[int, tuple[str, str]]) -> None:
        self.by_index = by_index

    def list(self) -> list[DeviceAssignment]:
        return [
            DeviceAssignment(ns, pod, "main", "nvidia.com/gpu", str(index))
            for index, (ns, pod) in sorted(self.by_index.items())
        ]

    def close(self) -> None:
        pass


class RecordingReporter(Reporter):
    """The agent's real reporter, keeping the latest replies it received (decoded by the agent's own codec)."""

    def __init__(self, operator_url: str, token_file: pathlib.Path, *, keep: int = 64, **kwargs: Any) -> None:
        super().__init__(operator_url, token_file, **kwargs)
        self.keep = keep
        self.replies: list[messages.ReportReply] = []
        self._lock = threading.Lock()

    def send(self, report: messages.NodeReport) -> messages.ReportReply:
        reply = super().send(report)
        with self._lock:
            self.replies = [*self.replies[-(self.keep - 1) :], reply]
        return reply

    def received(self) -> list[messages.ReportReply]:
        with self._lock:
            return list(self.replies)


class SimAgent:
    """The real node agent over simulated GPUs, reporting to the operator in a thread."""

    def __init__(
        self,
        node: str,
        operator_url: str,
        token_file: pathlib.Path,
        *,
        gpus: int = 4,
        seed: int = 0,
        pods: dict[int, tuple[str, str]] | None = None,
    ) -> None:
        self.sim = SimNvml(gpus, "h100", seed=seed)
        self.reporter = RecordingReporter(operator_url, token_file, timeout_s=0.8)
        for i in range(gpus):
            self.sim.set_load(i, 0.05)
        self.agent = NodeAgent(
            AgentConfig(node=node, interval_s=1.0, pods_interval_s=1.0),
            NvmlBackend(self.sim, name="sim"),
            reporter=self.reporter,
            pods=FixedPods(pods or {}),  # type: ignore[arg-type]
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.agent.run, args=(self._stop,), name=f"agent-{node}", daemon=True)

    def start(self) -> SimAgent:
        self.agent.start()
        self._thread.start()
        return self

    def set_load(self, utilization: float) -> None:
        for i in range(len(self.sim.gpus)):
            self.sim.set_load(i, utilization, 0.6)

    def limits(self) -> list[float]:
        return [g.power_limit_w for g in self.sim.gpus]

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(10)
        self.agent.close()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
