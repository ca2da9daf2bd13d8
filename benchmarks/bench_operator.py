"""The operator's two hot paths at fleet size: one control tick, and agent-report ingestion.

- Tick: 10,000 GPUs on 1,250 nodes in 50 budgets (45 racks in 4 rows and a facility; every GPU in three),
  pods of three tiers through WorkloadClasses. Timed: building the policy inputs from the ingested reports,
  `decide`, serialising every node's reply, and the live state (the whole `Controller.tick`).
- Ingest: 8-GPU reports, TokenReview answers cached (as in steady state). In-process (`Ingest.handle`) and over
  HTTP through uvicorn in a child process, where the figure is reports per CPU-second of the server process,
  i.e. what one core ingests (the target is 2,000/s).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

from prometheus_client import CollectorRegistry

from wattwise.crd.powerbudget import PowerBudgetSpec
from wattwise.crd.workloadclass import WorkloadClassSpec
from wattwise.operator.app import Service, create_app
from wattwise.operator.auth import AgentAuthenticator, Identity, TokenReviewCache
from wattwise.operator.controller import Controller
from wattwise.operator.ingest import Ingest
from wattwise.operator.metrics import OperatorMetrics
from wattwise.operator.records import BudgetRecord, ClassRecord, ClusterState, NodeRecord, PodRecord, ReportRecord
from wattwise.operator.runtime import tune_gc
from wattwise.telemetry import wire

GPUS_PER_NODE = 8
AGENT = "system:serviceaccount:wattwise-system:wattwise-agent"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CLASSES = {
    "chat": WorkloadClassSpec.model_validate({"tier": "critical", "expectedWattsPerGpu": 600}),
    "api": WorkloadClassSpec.model_validate({"tier": "standard", "floor": {"fraction": 0.4}}),
    "batch": WorkloadClassSpec.model_validate({"tier": "tolerant", "floor": {"fraction": 0.3}}),
}


def gpu_report(node: int, index: int, power: float, pod: str | None) -> wire.GpuReport:
    """A full sample, as the agent sends it (every optional field that NVML gives on an H100)."""
    return wire.GpuReport(
        uuid=f"GPU-{node:05d}-{index}",
        index=index,
        name="NVIDIA H100 80GB HBM3",
        status=wire.GpuStatus.OK,
        sampled_at=T0,
        power_watts=power,
        average_power_watts=power,
        energy_joules=1.0e9,
        enforced_limit_watts=700.0,
        limits=wire.LimitConstraints(min_watts=200, max_watts=700, default_watts=700),
        temperature_celsius=60.0,
        memory_temperature_celsius=70.0,
        sm_clock_mhz=1755,
        memory_clock_mhz=2619,
        utilization_percent=80,
        memory_utilization_percent=40,
        clock_event_reasons=0,
        clock_event_reason_names=[],
        pods=[wire.PodRef(namespace="default", pod=pod, container="main")] if pod else [],
    )


def node_report(node: int, sequence: int = 0) -> wire.NodeReport:
    gpus = [
        gpu_report(node, i, 80.0 + (node * 37 + i * 101) % 620, f"p-{node}-{i // 2}" if i < 6 else None)
        for i in range(GPUS_PER_NODE)
    ]
    return wire.NodeReport(
        node=f"node-{node:05d}",
        agent=wire.AgentInfo(version="bench", backend="sim", started_at=T0),
        sequence=sequence,
        sent_at=T0,
        sample_interval_seconds=1.0,
        state=wire.AgentState(mode=wire.AgentMode.CONNECTED, since=T0),
        gpus=gpus,
        pods_known=True,
    )


def fleet(nodes: int) -> ClusterState:
    state = ClusterState()
    names = ["chat", "api", "batch"]
    for name, spec in CLASSES.items():
        state.put_class(ClassRecord(name, spec))
    for n in range(nodes):
        name = f"node-{n:05d}"
        rack = n % 45
        state.put_node(NodeRecord(name, {"rack": f"r{rack}", "row": f"w{rack % 4}", "site": "dc"}, GPUS_PER_NODE))
        for p in range(3):
            klass = names[(n + p) % 3]
            state.put_pod(PodRecord("default", f"p-{n}-{p}", name, 2, None, klass))
        state.reports[name] = ReportRecord(node_report(n), 0.0)

    def budget(name: str, labels: dict[str, str], cap: float) -> None:
        spec = PowerBudgetSpec.model_validate(
            {
                "capWatts": cap,
                "nodeSelector": {"matchLabels": labels},
                "mode": "Enforce",
                "nonGpuPower": {"perNodeBaseWatts": 400, "pue": 1.2},
            }
        )
        state.put_budget(BudgetRecord(name, spec))
        state.activate(name)

    per_rack = nodes / 45 * GPUS_PER_NODE * 700
    for r in range(45):
        budget(f"rack-{r}", {"rack": f"r{r}"}, 0.8 * per_rack)
    for w in range(4):
        budget(f"row-{w}", {"row": f"w{w}"}, 0.75 * per_rack * 45 / 4)
    budget("facility", {"site": "dc"}, 0.7 * per_rack * 45)
    return state


def bench_tick(nodes: int) -> None:
    state = fleet(nodes)
    controller = Controller(state)
    phases: dict[str, list[float]] = {"tick": [], "live": []}
    for i in range(8):
        now = 0.5 + i
        for record in list(state.reports.values()):  # fresh reports every second, as the agents send them
            state.reports[record.report.node] = ReportRecord(record.report, now - 0.5)
        started = time.perf_counter()
        controller.tick(now, T0, state.snapshot())
        ticked = time.perf_counter()
        controller.live_state()
        lived = time.perf_counter()
        if i < 2:
            continue  # the first ticks build the topology cache and the demand estimates
        phases["tick"].append(ticked - started)
        phases["live"].append(lived - ticked)
        for name, seconds in controller.last_timings.items():
            phases.setdefault(name, []).append(seconds)
    med = {k: statistics.median(v) * 1e3 for k, v in phases.items()}
    decision = controller.decision
    assert decision is not None
    limited = sum(r.gpus_limited for r in decision.budgets.values())
    print(
        f"control tick: {nodes * GPUS_PER_NODE:,} GPUs on {nodes:,} nodes in {len(state.budgets)} budgets: "
        f"median {med['tick']:.0f} ms per tick = policy inputs {med['inputs']:.0f} + decide() {med['decide']:.0f} "
        f"+ status/Events {med['status']:.0f} + agent replies {med['replies']:.0f} ms "
        f"({limited:,} GPU-budget pairs limited); the live state for /v1/state takes {med['live']:.0f} ms more, "
        "once per tick, on demand"
    )


def ingest_service(nodes: int) -> Service:
    state = fleet(nodes)
    state.reports.clear()
    controller = Controller(state)
    controller.tick(0.5, T0)  # replies for every node exist once reports arrive; use the first tick's shape
    for n in range(nodes):
        state.reports[f"node-{n:05d}"] = ReportRecord(node_report(n), 0.0)
    controller.tick(1.0, T0)

    async def review(token: str) -> Identity:
        node = token.removeprefix("agent-")
        return Identity(
            True,
            AGENT,
            {"authentication.kubernetes.io/pod-name": [f"a-{node}"], "authentication.kubernetes.io/node-name": [node]},
        )

    auth = AgentAuthenticator(TokenReviewCache(review), [AGENT])
    registry = CollectorRegistry()
    return Service(Ingest(state, controller, auth), controller, OperatorMetrics(registry, controller), registry)


def bodies(nodes: int) -> list[tuple[str, bytes]]:
    """(token, body template) per node; `{SEQ}` is replaced with an increasing sequence."""
    out = []
    for n in range(nodes):
        body = node_report(n, sequence=987654321).to_json().replace(b"987654321", b"{SEQ}")
        out.append((f"agent-node-{n:05d}", body))
    return out


def bench_ingest_in_process(nodes: int, count: int) -> None:
    service = ingest_service(nodes)
    templates = bodies(nodes)

    async def run() -> float:
        started = time.process_time()
        for i in range(count):
            token, body = templates[i % nodes]
            answer = await service.ingest.handle(f"Bearer {token}", body.replace(b"{SEQ}", str(i + 1).encode()))
            assert answer.status == 200, answer.body
        return time.process_time() - started

    cpu = asyncio.run(run())
    size = len(templates[0][1])
    print(f"ingest in-process: {count / cpu:,.0f} reports/s per core ({size:,}-byte 8-GPU reports, token cached)")


def serve(port: int, nodes: int) -> None:
    """Child process: the operator's app with the fleet's replies, on uvicorn (as `wattwise operator` runs it)."""
    import uvicorn

    app = create_app(ingest_service(nodes))
    tune_gc()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_ingest_http(nodes: int, count: int, connections: int = 4) -> None:
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", f"from benchmarks.bench_operator import serve; serve({port}, {nodes})"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("benchmark server did not start") from None
                time.sleep(0.2)
        templates = bodies(nodes)
        failures: list[int] = []

        def client(worker: int, requests: int, sequence_base: int) -> None:
            """Worker w reports for the nodes n with n % connections == w, so each node's sequence only grows."""
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine = range(worker, nodes, connections)
            for i in range(requests):
                n = mine[i % len(mine)]
                token, body = templates[n]
                payload = body.replace(b"{SEQ}", str(sequence_base + i + 1).encode())
                conn.request(
                    "POST",
                    wire.REPORT_PATH,
                    payload,
                    {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
            conn.close()

        # Warm-up: one report per node (TokenReview answers cached, as in steady state).
        warm = [threading.Thread(target=client, args=(w, nodes // connections + 1, 0)) for w in range(connections)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        failures.clear()
        per = count // connections
        cpu_before, wall_before = _cpu_seconds(child.pid), time.perf_counter()
        threads = [threading.Thread(target=client, args=(w, per, 10 * nodes)) for w in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = _cpu_seconds(child.pid) - cpu_before, time.perf_counter() - wall_before
        sent = per * connections
        print(
            f"ingest over HTTP (uvicorn, {connections} keep-alive connections): {sent / cpu:,.0f} reports per "
            f"server CPU-second (target 2,000); {sent / wall:,.0f} reports/s wall-clock with the load generator "
            f"sharing the machine; {len(failures)} failed"
        )
    finally:
        child.terminate()
        child.wait(10)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    tune_gc()  # as `wattwise operator` runs
    bench_tick(125 if quick else 1_250)
    bench_ingest_in_process(1_250, 2_000 if quick else 20_000)
    bench_ingest_http(1_250, 2_000 if quick else 20_000)


if __name__ == "__main__":
    main(sys.argv[1:])
