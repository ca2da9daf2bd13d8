"""`wattwise agent` as a user runs it: a real process, real HTTP, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.node_agent.fakes import FakeOperator
from wattwise.telemetry.wire import FlexibleGpu, GpuDirective, NodeEnvelope, ReportReply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_for(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_agent_without_nvml_exits_with_a_hint() -> None:
    """This machine has no libnvidia-ml: the real pynvml says so and the agent exits 3 with what to do."""
    out = subprocess.run(
        [sys.executable, "-m", "wattwise", "agent", "--backend", "nvml", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3, out.stderr
    assert "NVML is not usable" in out.stderr and "--backend sim" in out.stderr


def test_sim_agent_serves_metrics_follows_limits_and_restores_on_sigterm() -> None:
    port = free_port()
    with FakeOperator() as operator:
        env = {**os.environ, "WATTWISE_OPERATOR_URL": operator.url, "WATTWISE_NODE_NAME": "node-x"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattwise",
                "agent",
                "--backend",
                "sim",
                "--sim-gpus",
                "2",
                "--token-file",
                "none",
                "--pod-resources-socket",
                "none",
                "--interval",
                "0.2",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_for(lambda: get(f"{base}/readyz")[0] == 200), "agent never became ready"
            assert wait_for(lambda: len(operator.reports) >= 2)
            uuid = operator.reports[-1].gpus[0].uuid
            operator.reply = ReportReply(gpus={uuid: GpuDirective(enforced=True, power_limit_watts=420)})
            labels = f'gpu="0",namespace="",node="node-x",pod="",tier="",uuid="{uuid}"'
            line = f"wattwise_gpu_power_limit_watts{{{labels}}} 420.0"
            assert wait_for(lambda: line in get(f"{base}/metrics")[1]), "limit never applied"
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, output
    assert "power limit 420.0 W" in output and "power limit 700.0 W" in output  # set, then restored on exit


def test_sim_agent_runs_the_envelope_loop_in_its_own_thread() -> None:
    """The real process: the fast loop ticks at 10 Hz beside the 1 Hz loop, steers the flexible GPUs, says so in
    its metrics and reports, and its limits are restored on SIGTERM like the others."""
    port = free_port()
    with FakeOperator() as operator:
        env = {**os.environ, "WATTWISE_OPERATOR_URL": operator.url, "WATTWISE_NODE_NAME": "node-x"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattwise", "agent", "--backend", "sim", "--sim-gpus", "2", "--token-file", "none",
             "--pod-resources-socket", "none", "--interval", "1", "--envelope-interval", "0.1",
             "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_for(lambda: len(operator.reports) >= 1), "no report"
            protected, flexible = (g.uuid for g in operator.reports[-1].gpus)
            operator.reply = ReportReply(
                gpus={u: GpuDirective(enforced=True, power_limit_watts=500) for u in (protected, flexible)},
                envelope=NodeEnvelope(
                    watts=400,  # whatever the protected GPU draws, the flexible one sits at its floor or near it
                    protected=[protected],
                    flexible=[FlexibleGpu(uuid=flexible, floor_watts=210, ceiling_watts=700)],
                ),
            )
            assert wait_for(lambda: 'wattwise_agent_envelope_active{node="node-x"} 1.0' in get(f"{base}/metrics")[1])
            metrics = get(f"{base}/metrics")[1]
            ticks = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(
                "wattwise_agent_envelope_ticks_total"))  # fmt: skip
            time.sleep(1.0)
            metrics = get(f"{base}/metrics")[1]
            later = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(
                "wattwise_agent_envelope_ticks_total"))  # fmt: skip
            assert 7 <= later - ticks <= 13  # 10 Hz, whatever the 1 Hz loop does
            assert 'wattwise_gpu_envelope_cap_watts{gpu="1"' in metrics
            assert wait_for(lambda: any(g.capped is not None for g in operator.reports[-1].gpus))
            assert [g.capped is None for g in operator.reports[-1].gpus] == [True, False]
            assert get(f"{base}/healthz")[0] == 200
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, output
    assert "node envelope: steering 1 GPU(s) inside 400 W" in output
    assert output.count("power limit 700.0 W") == 2  # both GPUs back to their default on exit
