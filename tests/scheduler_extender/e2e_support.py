"""For the end-to-end tests: serve ASGI apps on loopback in a thread, and a fake operator to serve live state.

The real operator comes later; `FakeOperator` plays its part of the contract (`GET /v1/state`) with documents
the test builds, and `sync_from_cluster` does the one thing the tests need from its control loop: attribute
bound pods to GPUs and take their expected power out of the budget's guaranteed headroom.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from kubernetes.client import ApiClient

from tests.support.cluster_objects import rest_call
from wattwise.live_state import BudgetView, LiveState, NodeView


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(app: Any, host: str, port: int) -> Iterator[str]:
    """Run `app` with uvicorn in a daemon thread until the block ends; yields its base URL."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class FakeOperator:
    """Serves `state` at /v1/state; `budgets` and `nodes` are the test's fleet before any pod lands."""

    def __init__(self, budgets: list[BudgetView], nodes: dict[str, NodeView]) -> None:
        self.budgets = budgets
        self.nodes = nodes
        self.state = LiveState(generated_at=_now(), budgets=budgets, nodes=nodes)
        self.app = FastAPI()
        self.app.add_api_route("/v1/state", self._serve, methods=["GET"])

    async def _serve(self) -> Response:
        return Response(self.state.model_dump_json(), media_type="application/json")

    def sync_from_cluster(self, api: ApiClient, namespace: str, watts_per_gpu: float = 700.0) -> None:
        """Show every bound pod of `namespace` on its node's GPUs and charge critical/standard ones to budgets."""
        pods = rest_call(api, "GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
        used: dict[str, list[str]] = {}
        charged: dict[str, float] = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if not node or node not in self.nodes:
                continue
            limits = pod["spec"]["containers"][0]["resources"]["limits"]
            gpus = int(limits["nvidia.com/gpu"])
            used.setdefault(node, []).extend([f"{namespace}/{pod['metadata']['name']}"] * gpus)
            tier = (pod["metadata"].get("annotations") or {}).get("wattwise.dev/latency-tier", "standard")
            if tier != "tolerant":
                for b in self.nodes[node].budgets:
                    charged[b] = charged.get(b, 0.0) + gpus * watts_per_gpu
        nodes = {name: _attribute(view, used.get(name, [])) for name, view in self.nodes.items()}
        budgets = [
            b.model_copy(update={"guaranteed_headroom_w": b.guaranteed_headroom_w - charged.get(b.name, 0.0)})
            for b in self.budgets
        ]
        self.state = LiveState(generated_at=_now(), budgets=budgets, nodes=nodes)


def _attribute(view: NodeView, pods: list[str]) -> NodeView:
    gpus = [g.model_copy(update={"pod": pods[i] if i < len(pods) else None}) for i, g in enumerate(view.gpus)]
    return view.model_copy(update={"gpus": gpus})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
