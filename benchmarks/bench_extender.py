"""Scheduler extender latency: filter + prioritize at 100, 1,000 and 5,000 nodes (nodeCacheCapable).

Measured in-process through the ASGI app (httpx.ASGITransport): request parsing, placement, reservations,
metrics and JSON encoding are counted, the TCP hop from kube-scheduler is not. One Python thread, so the
figures are what one core delivers. The fleet: racks of 16 nodes x 8 GPUs under one hall budget, a quarter
of the racks too tight for the pod (so rejection reasons are built too), 50 reservations held by other pods.
The last column repeats the run while a new live state is parsed (in a worker thread, as in production) and
installed every 0.25 s: the parse holds the GIL, so this is what requests see while the cache refreshes.
Target: p99 under 10 ms for filter + prioritize at 1,000 nodes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import os
import statistics
import time
from typing import Any

import httpx

from wattwise.live_state import BudgetView, GpuView, LiveState, NodeView
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.reservations import BudgetClaim
from wattwise.scheduler_extender.settings import ExtenderSettings
from wattwise.scheduler_extender.state_cache import parse_snapshot

SIZES = ((100, 500), (1_000, 300), (5_000, 100))  # (nodes, filter+prioritize pairs measured)
NODES_PER_RACK = 16
#: The extender refreshes at 1 Hz; the busy column refreshes 4x as often so every run sees several refreshes.
REFRESH_S = 0.25


def fleet(n_nodes: int) -> LiveState:
    racks = max(1, n_nodes // NODES_PER_RACK)
    budgets = [
        BudgetView(
            name=f"rack-{r}",
            cap_w=120_000.0,
            pue=1.25,
            guaranteed_headroom_w=1_000.0 if r % 4 == 0 else 40_000.0,
            allocated_default_limit_w=60_000.0,
        )
        for r in range(racks)
    ]
    budgets.append(BudgetView(name="hall", cap_w=1e9, guaranteed_headroom_w=5e8))
    nodes = {
        f"gpu-node-{i:05d}": NodeView(
            budgets=[f"rack-{i % racks}", "hall"],
            gpu_product="NVIDIA-H100-80GB-HBM3",
            gpus=[
                GpuView(uuid=f"GPU-{i}-{g}", index=g, default_limit_w=700.0, temperature_c=55.0 + (i + g) % 25)
                for g in range(8)
            ],
        )
        for i in range(n_nodes)
    }
    return LiveState(generated_at=dt.datetime.now(dt.UTC), budgets=budgets, nodes=nodes)


def request_body(node_names: list[str]) -> bytes:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "chat-7f9c",
            "namespace": "inference",
            "uid": "0d6c1f1e",
            "annotations": {"wattwise.dev/latency-tier": "critical"},
            "labels": {"app": "chat"},
        },
        "spec": {
            "schedulerName": "wattwise-scheduler",
            "containers": [
                {"name": "vllm", "image": "vllm/vllm-openai:v0.9", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
            ],
        },
    }
    return json.dumps({"Pod": pod, "Nodes": None, "NodeNames": node_names}).encode()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(n_nodes: int, pairs: int, refresh_s: float | None = None) -> dict[str, list[float]]:
    """Latencies per call; with `refresh_s`, a new live state is parsed (in a thread) and installed that often."""
    gc.collect()  # garbage from the previous size must not be collected inside this one's samples
    app = create_app(ExtenderSettings(), refresh=False, clock=lambda: 1000.0)
    live = fleet(n_nodes)
    app.state.cache.update(live)
    refresher = asyncio.create_task(_refresh(app, live, refresh_s)) if refresh_s else None
    for p in range(50):
        app.state.book.hold(f"other/p{p}", ["gpu-node-00001"], {"rack-1": BudgetClaim(10.0, 10.0)}, now=1000.0)
    body = request_body(list(live.nodes))
    headers = {"content-type": "application/json"}
    times: dict[str, list[float]] = {"filter": [], "prioritize": [], "filter+prioritize": []}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://extender") as client:
        for i in range(pairs + 10):  # the first 10 warm up
            t0 = time.perf_counter()
            filtered = await client.post("/filter", content=body, headers=headers)
            t1 = time.perf_counter()
            passed = filtered.json()["NodeNames"]
            prio_body = body if i % 2 else request_body(passed)  # what the scheduler sends after its own filters
            t2 = time.perf_counter()
            prioritized = await client.post("/prioritize", content=prio_body, headers=headers)
            t3 = time.perf_counter()
            assert filtered.status_code == prioritized.status_code == 200
            if i >= 10:
                times["filter"].append(t1 - t0)
                times["prioritize"].append(t3 - t2)
                times["filter+prioritize"].append((t1 - t0) + (t3 - t2))
    if refresher is not None:
        refresher.cancel()
    return times


async def _refresh(app: Any, live: LiveState, every_s: float) -> None:
    raw = live.model_dump_json().encode()
    while True:
        await asyncio.sleep(every_s)
        app.state.cache.install(await asyncio.to_thread(parse_snapshot, raw, 1000.0))


def main(argv: list[str]) -> None:
    pinned = _pin_to_one_core()
    try:
        _run()
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)


def _pin_to_one_core() -> set[int] | None:
    """Measure what one core delivers: pin the process to one CPU (restored afterwards), where Linux allows."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    return before


def _run() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"in-process ASGI, one thread, pinned to {cpus} CPU; nodeCacheCapable (NodeNames); critical pod, 2 GPUs")
    print(f"{'nodes':>6} {'call':<18} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}   p50/p99 ms, state refreshed 4 Hz")
    for n_nodes, pairs in SIZES:
        quiet = asyncio.run(measure(n_nodes, pairs))
        busy = asyncio.run(measure(n_nodes, pairs, refresh_s=REFRESH_S))
        for name, samples in quiet.items():
            p50, p99 = pct(samples, 0.5) * 1e3, pct(samples, 0.99) * 1e3
            rate = 1.0 / statistics.fmean(samples)
            b50, b99 = pct(busy[name], 0.5) * 1e3, pct(busy[name], 0.99) * 1e3
            print(f"{n_nodes:>6} {name:<18} {p50:>8.2f} {p99:>8.2f} {rate:>9,.0f}   {b50:>6.2f} / {b99:.2f}")
    print("target: filter+prioritize p99 < 10 ms at 1,000 nodes on one core")
