"""The node agent's footprint: CPU share of one core and peak RSS while sampling 8 simulated GPUs at 1 Hz, with
and without the envelope loop re-sharing a node envelope at 10 Hz.

Runs the real `wattwise agent --backend sim` as a subprocess (`python -m wattwise agent`, the chart's command;
`--entry module` runs `python -m wattwise.node_agent`) with everything a node has: an operator that answers
every report (and moves one GPU's limit every 10 s, so actuation is exercised) with a node envelope over the 8
GPUs (4 protected, 4 flexible), a kubelet PodResources gRPC server on a unix socket, a projected-token file, and
a Prometheus scrape every 15 s. The agent runs twice: `--envelope-interval 0.1` (the default: the fast loop reads
every GPU's power and re-shares the envelope 10 times a second) and `--envelope-interval 0` (envelopes ignored:
the 1 Hz loop alone, as before envelopes).
CPU is utime+stime from /proc/<pid>/stat over the measured window (after the agent is ready); peak RSS is
VmHWM from /proc/<pid>/status. Targets, for both runs (the first is the default configuration): under 1% of one
core, under 60 MiB.

`python -m benchmarks agent` runs 60 s each; `python -m benchmarks.bench_agent --seconds 10` for a quick check,
`--envelope on|off` for one of the two.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from typing import Any

import grpc

from wattwise.node_agent.podresources import api_pb2, api_pb2_grpc
from wattwise.telemetry import wire

GPUS = 8
CPU_TARGET = 0.01
RSS_TARGET_MIB = 60.0


class _Operator:
    """Answers POST /v1/reports; every 10th report moves GPU 0's limit between 450 W and 550 W. Every reply carries
    a node envelope: GPUs 0-3 protected, 4-7 flexible (so the fast loop reads and may set all 8)."""

    def __init__(self) -> None:
        self.reports = 0
        self.capped = 0  #: GPU reports that carried a `capped` verdict
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                report = wire.NodeReport.model_validate_json(self.rfile.read(int(self.headers["Content-Length"])))
                owner.reports += 1
                owner.capped += sum(1 for g in report.gpus if g.capped is not None)
                watts = 450.0 if (owner.reports // 10) % 2 else 550.0
                uuids = [g.uuid for g in report.gpus]
                gpus = {u: wire.GpuDirective(enforced=True, power_limit_watts=500.0) for u in uuids}
                gpus[uuids[0]] = wire.GpuDirective(enforced=True, power_limit_watts=watts)
                reply = wire.ReportReply(
                    gpus=gpus,
                    fail_safe=wire.FailSafePolicy(grace_period_seconds=30, limit_fraction=0.7),
                    envelope=wire.NodeEnvelope(
                        watts=GPUS * 400.0,
                        protected=uuids[: GPUS // 2],
                        flexible=[
                            wire.FlexibleGpu(uuid=u, floor_watts=200.0, ceiling_watts=700.0) for u in uuids[GPUS // 2 :]
                        ],
                    ),
                )
                body = reply.to_json()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Kubelet(api_pb2_grpc.PodResourcesListerServicer):
    def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:
        return api_pb2.ListPodResourcesResponse(
            pod_resources=[
                api_pb2.PodResources(
                    name=f"llm-{i}",
                    namespace="inference",
                    containers=[
                        api_pb2.ContainerResources(
                            name="server",
                            devices=[api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[str(i)])],
                        )
                    ],
                )
                for i in range(GPUS)
            ]
        )


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _status_kib(pid: int, key: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return None


def _import_rss_mib(code: str) -> float:
    """Peak RSS (VmHWM) of a fresh interpreter that runs `code` (imports only), in MiB.

    Not getrusage's ru_maxrss: Linux carries that across fork and exec, so a child would report this
    benchmark's own peak (grpc, pydantic) whenever that is higher than its own."""
    probe = f"{code}\nimport re; print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def _metric(text: str, name: str) -> float | None:
    """The value of an unlabelled-but-node series in a Prometheus text page, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@dataclasses.dataclass(frozen=True)
class _Run:
    seconds: float
    cpu_share: float
    hwm_mib: float
    rss_mib: float
    anon_mib: float
    file_mib: float
    reports: int
    capped: int
    scrapes: int
    metrics_bytes: int
    fast_ticks: float | None
    adjustments: float | None
    fast_tick_s: float | None


def _measure(command: list[str], seconds: float, envelope_interval: float) -> _Run:
    operator = _Operator()
    tmp = tempfile.TemporaryDirectory(prefix="wattwise-bench-agent-")
    sock = os.path.join(tmp.name, "kubelet.sock")
    kubelet = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(_Kubelet(), kubelet)  # type: ignore[no-untyped-call]
    kubelet.add_insecure_port(f"unix://{sock}")
    kubelet.start()
    token = pathlib.Path(tmp.name, "token")
    token.write_text("bench-token\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, *command, "--backend", "sim", "--sim-gpus", str(GPUS),
         "--interval", "1", "--envelope-interval", str(envelope_interval),
         "--listen", f"127.0.0.1:{port}", "--operator-url", operator.url,
         "--token-file", str(token), "--pod-resources-socket", sock, "--node-name", "bench-node",
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _get(f"{base}/readyz") is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"agent did not become ready: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        cpu0, t0, reports0, capped0 = _cpu_seconds(proc.pid), time.monotonic(), operator.reports, operator.capped
        first = (_get(f"{base}/metrics") or b"").decode()
        next_scrape = t0 + 15
        scrapes, metrics_bytes = 1, len(first)
        while (now := time.monotonic()) < t0 + seconds:
            if now >= next_scrape:  # Prometheus' default scrape interval
                metrics_bytes = len(_get(f"{base}/metrics") or b"")
                scrapes += 1
                next_scrape += 15
            time.sleep(min(0.5, max(0.0, t0 + seconds - now)))
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        last = (_get(f"{base}/metrics") or b"").decode()
        run = _Run(
            seconds=t1 - t0,
            cpu_share=(cpu1 - cpu0) / (t1 - t0),
            hwm_mib=_status_kib(proc.pid, "VmHWM") / 1024,
            rss_mib=_status_kib(proc.pid, "VmRSS") / 1024,
            anon_mib=_status_kib(proc.pid, "RssAnon") / 1024,
            file_mib=_status_kib(proc.pid, "RssFile") / 1024,
            reports=operator.reports - reports0,
            capped=operator.capped - capped0,
            scrapes=scrapes,
            metrics_bytes=metrics_bytes,
            fast_ticks=_delta(first, last, "wattwise_agent_envelope_ticks_total"),
            adjustments=_delta(first, last, "wattwise_agent_envelope_adjustments_total"),
            fast_tick_s=_metric(last, "wattwise_agent_envelope_tick_duration_seconds"),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        kubelet.stop(grace=None).wait()
        operator.stop()
        tmp.cleanup()
    return run


def _delta(first: str, last: str, name: str) -> float | None:
    a, b = _metric(first, name), _metric(last, name)
    return b - a if a is not None and b is not None else None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_agent")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--entry",
        choices=["cli", "module"],
        default="cli",
        help="cli: `wattwise agent` (the chart's command); module: `python -m wattwise.node_agent`",
    )
    parser.add_argument(
        "--envelope",
        choices=["both", "on", "off"],
        default="both",
        help="on: --envelope-interval 0.1 (the default); off: --envelope-interval 0; both: one run each",
    )
    args = parser.parse_args(argv)
    command = ["-m", "wattwise", "agent"] if args.entry == "cli" else ["-m", "wattwise.node_agent"]
    shown = " ".join(["python", *command])
    intervals = {"on": [0.1], "off": [0.0], "both": [0.1, 0.0]}[args.envelope]
    for interval in intervals:
        run = _measure(command, args.seconds, interval)
        mode = f"envelope loop at {1 / interval:.0f} Hz" if interval else "envelopes ignored (--envelope-interval 0)"
        print(f"`{shown} --envelope-interval {interval:g}`, {GPUS} simulated GPUs at 1 Hz, {mode}, "
              f"for {run.seconds:.0f} s: {run.reports} reports, {run.scrapes} scrapes "
              f"({run.metrics_bytes / 1024:.0f} KiB each)")  # fmt: skip
        cpu_verdict = f"(target < {CPU_TARGET * 100:.0f}%) {'OK' if run.cpu_share < CPU_TARGET else 'OVER TARGET'}"
        print(f"  CPU: {run.cpu_share * 100:.2f}% of one core {cpu_verdict}")
        rss_ok = "OK" if run.hwm_mib < RSS_TARGET_MIB else "OVER TARGET"
        print(f"  peak RSS (VmHWM): {run.hwm_mib:.1f} MiB, now {run.rss_mib:.1f} MiB"
              f" (target < {RSS_TARGET_MIB:.0f} MiB) {rss_ok}")  # fmt: skip
        print(f"  resident now: {run.anon_mib:.1f} MiB anonymous (heap) + {run.file_mib:.1f} MiB file-backed"
              f" (shared libraries)")  # fmt: skip
        if interval and run.fast_ticks is not None:
            print(f"  envelope loop: {run.fast_ticks / run.seconds:.1f} ticks/s, last tick "
                  f"{(run.fast_tick_s or 0) * 1e3:.2f} ms, {(run.adjustments or 0) / run.seconds:.1f} limit writes/s, "
                  f"{run.capped} capped verdicts reported")  # fmt: skip

    bare = _import_rss_mib("pass")
    agent_only = _import_rss_mib("import wattwise.cli as c; c.build_parser('agent'); import pynvml")
    with_sim = _import_rss_mib("import wattwise.cli as c; c.build_parser('agent'); import wattwise.node_agent.simnvml")
    every_role = _import_rss_mib("import wattwise.cli as c; c.build_parser()")
    print(f"  at import (peak RSS of a fresh interpreter): the interpreter {bare:.1f} MiB, the agent with --backend "
          f"nvml {agent_only:.1f} MiB, with --backend sim {with_sim:.1f} MiB (the simulated GPUs' physics, numpy, "
          f"{with_sim - agent_only:.1f} MiB, is not loaded on a GPU node)")  # fmt: skip
    print(f"  (`wattwise --help` imports every role: {every_role:.1f} MiB; `wattwise agent` imports the agent's only)")


if __name__ == "__main__":
    main(sys.argv[1:])
