"""The node agent's footprint: CPU share of one core and peak RSS while sampling 8 simulated GPUs at 1 Hz.

Runs the real `wattwise agent --backend sim` as a subprocess (`python -m wattwise agent`, the chart's command;
`--entry module` runs `python -m wattwise.node_agent`) with everything a node has: an operator that answers
every report (and moves one GPU's limit every 10 s, so actuation is exercised), a kubelet PodResources gRPC
server on a unix socket, a projected-token file, and a Prometheus scrape every 15 s.
CPU is utime+stime from /proc/<pid>/stat over the measured window (after the agent is ready); peak RSS is
VmHWM from /proc/<pid>/status. Targets: under 1% of one core, under 60 MiB.

`python -m benchmarks agent` runs 60 s; `python -m benchmarks.bench_agent --seconds 10` for a quick check.
"""

from __future__ import annotations

import argparse
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
    """Answers POST /v1/reports; every 10th report moves GPU 0's limit between 450 W and 550 W."""

    def __init__(self) -> None:
        self.reports = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                report = wire.NodeReport.model_validate_json(self.rfile.read(int(self.headers["Content-Length"])))
                owner.reports += 1
                watts = 450.0 if (owner.reports // 10) % 2 else 550.0
                reply = wire.ReportReply(
                    gpus={report.gpus[0].uuid: wire.GpuDirective(enforced=True, power_limit_watts=watts)},
                    fail_safe=wire.FailSafePolicy(grace_period_seconds=30, limit_fraction=0.7),
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_agent")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--entry",
        choices=["cli", "module"],
        default="cli",
        help="cli: `wattwise agent` (the chart's command); module: `python -m wattwise.node_agent`",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds
    command = ["-m", "wattwise", "agent"] if args.entry == "cli" else ["-m", "wattwise.node_agent"]

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
         "--interval", "1", "--listen", f"127.0.0.1:{port}", "--operator-url", operator.url,
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
        cpu0, t0, reports0 = _cpu_seconds(proc.pid), time.monotonic(), operator.reports
        next_scrape = t0
        scrapes, metrics_bytes = 0, 0
        while (now := time.monotonic()) < t0 + seconds:
            if now >= next_scrape:  # Prometheus' default scrape interval
                metrics_bytes = len(_get(f"{base}/metrics") or b"")
                scrapes += 1
                next_scrape += 15
            time.sleep(min(0.5, max(0.0, t0 + seconds - now)))
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        hwm_mib = _status_kib(proc.pid, "VmHWM") / 1024
        rss_mib = _status_kib(proc.pid, "VmRSS") / 1024
        anon_mib = _status_kib(proc.pid, "RssAnon") / 1024
        file_mib = _status_kib(proc.pid, "RssFile") / 1024
        reports = operator.reports - reports0
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

    share = (cpu1 - cpu0) / (t1 - t0)
    bare = _import_rss_mib("pass")
    agent_only = _import_rss_mib("import wattwise.cli as c; c.build_parser('agent'); import pynvml")
    with_sim = _import_rss_mib("import wattwise.cli as c; c.build_parser('agent'); import wattwise.node_agent.simnvml")
    every_role = _import_rss_mib("import wattwise.cli as c; c.build_parser()")
    shown = " ".join(["python", *command])
    print(f"`{shown}`, {GPUS} simulated GPUs at 1 Hz for {t1 - t0:.0f} s: "
          f"{reports} reports, {scrapes} scrapes "
          f"({metrics_bytes / 1024:.0f} KiB each)")  # fmt: skip
    print(f"  CPU: {share * 100:.2f}% of one core (target < {CPU_TARGET * 100:.0f}%)"
          f" {'OK' if share < CPU_TARGET else 'OVER TARGET'}")  # fmt: skip
    print(f"  peak RSS (VmHWM): {hwm_mib:.1f} MiB, now {rss_mib:.1f} MiB (target < {RSS_TARGET_MIB:.0f} MiB)"
          f" {'OK' if hwm_mib < RSS_TARGET_MIB else 'OVER TARGET'}")  # fmt: skip
    print(f"  resident now: {anon_mib:.1f} MiB anonymous (heap) + {file_mib:.1f} MiB file-backed (shared libraries)")
    print(f"  at import (peak RSS of a fresh interpreter): the interpreter {bare:.1f} MiB, the agent with --backend "
          f"nvml {agent_only:.1f} MiB, with --backend sim {with_sim:.1f} MiB (the simulated GPUs' physics, numpy, "
          f"{with_sim - agent_only:.1f} MiB, is not loaded on a GPU node)")  # fmt: skip
    print(f"  (`wattwise --help` imports every role: {every_role:.1f} MiB; `wattwise agent` imports the agent's only)")


if __name__ == "__main__":
    main(sys.argv[1:])
