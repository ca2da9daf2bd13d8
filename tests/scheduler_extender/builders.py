"""Small builders for live-state documents, pods and extender requests, shared by the extender tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx

from wattwise.live_state import BudgetView, GpuView, LiveState, NodeView

SCHEDULER = "wattwise-scheduler"


def budget(name: str, **kw: Any) -> BudgetView:
    fields: dict[str, Any] = {"cap_w": 10_000.0, "target_utilization": 0.9, "guaranteed_headroom_w": 5_000.0}
    fields.update(kw)
    return BudgetView(name=name, **fields)


def node(
    budgets: list[str],
    *,
    gpus: int = 8,
    default_limit_w: float | None = 700.0,
    temperature_c: float | None = 50.0,
    pods: list[str | None] | None = None,
    **kw: Any,
) -> NodeView:
    pods = pods or []
    views = [
        GpuView(
            uuid=f"GPU-{i}",
            index=i,
            default_limit_w=default_limit_w,
            temperature_c=temperature_c,
            pod=pods[i] if i < len(pods) else None,
        )
        for i in range(gpus)
    ]
    return NodeView(budgets=budgets, gpus=views, **kw)


def state(budgets: list[BudgetView], nodes: dict[str, NodeView], **kw: Any) -> LiveState:
    return LiveState(generated_at=dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC), budgets=budgets, nodes=nodes, **kw)


def pod(
    name: str = "p",
    *,
    gpus: int | str | None = 1,
    tier: str | None = "critical",
    workload_class: str | None = None,
    scheduler: str | None = SCHEDULER,
    namespace: str = "team",
) -> dict[str, Any]:
    annotations = {}
    if tier is not None:
        annotations["wattwise.dev/latency-tier"] = tier
    if workload_class is not None:
        annotations["wattwise.dev/workload-class"] = workload_class
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus is not None else {}
    spec: dict[str, Any] = {"containers": [{"name": "server", "image": "vllm", "resources": resources}]}
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "annotations": annotations},
        "spec": spec,
    }


def args(pod_doc: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """ExtenderArgs as kube-scheduler sends it with nodeCacheCapable: true."""
    return {"Pod": pod_doc, "Nodes": None, "NodeNames": nodes}


def node_list_args(pod_doc: dict[str, Any], nodes: list[str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    """ExtenderArgs with nodeCacheCapable: false: full v1.Node objects."""
    items = [
        {"metadata": {"name": n, "labels": dict(labels or {})}, "status": {"capacity": {"nvidia.com/gpu": "8"}}}
        for n in nodes
    ]
    return {"Pod": pod_doc, "Nodes": {"metadata": {}, "items": items}, "NodeNames": None}


class SyncClient:
    """Drive the ASGI app in-process (httpx.ASGITransport) from synchronous tests and hypothesis."""

    def __init__(self, app: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://extender")

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()
