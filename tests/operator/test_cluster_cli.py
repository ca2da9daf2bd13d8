"""`wattwise operator` as a process: serves, answers `wattwise status`, and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.operator.harness import wait_until
from tests.support.cluster_bins import REPO

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_operator_process_serves_and_stops_on_sigterm(
    operator_kubeconfig: pathlib.Path, make_gpu_node: Callable[..., str]
) -> None:
    node = make_gpu_node(f"op-cli-{secrets.token_hex(3)}", 4)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    argv = [
        sys.executable,
        "-m",
        "wattwise",
        "operator",
        "--standalone",
        "--kubeconfig",
        str(operator_kubeconfig),
        "--listen",
        f"127.0.0.1:{port}",
        "--log-level",
        "WARNING",
    ]
    child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, "the operator process ready", timeout=30)

        def status() -> str:
            answer = subprocess.run(
                [sys.executable, "-m", "wattwise", "status", "--url", url], capture_output=True, text=True, timeout=30
            )
            assert answer.returncode == 0, answer.stderr
            return answer.stdout if node in answer.stdout else ""

        table = wait_until(status, "the node in `wattwise status`", timeout=20)
        assert "NODE" in table and "never" in table  # no agent on it: never reported
        child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=30)
        assert child.returncode == 0, output
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert "Traceback" not in output, output
