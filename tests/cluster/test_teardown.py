"""Nothing outlives the control plane: no process, no listening port, whatever way it ends."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.support import cluster_process
from tests.support.cluster_bins import REPO
from tests.support.controlplane import running_control_plane

pytestmark = pytest.mark.cluster


def _leftovers(pgids: set[int], ports: set[int], timeout: float) -> tuple[set[int], set[int]]:
    deadline = time.monotonic() + timeout
    while True:
        alive = cluster_process.processes_in_groups(pgids)
        bound = ports & set(cluster_process.listening_ports().values())
        if (not alive and not bound) or time.monotonic() > deadline:
            return alive, bound
        time.sleep(0.2)


def test_a_failing_test_still_stops_everything(cluster_bin_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    failing = pytest.raises(RuntimeError, match="simulated test failure")
    with failing, running_control_plane(tmp_path, cluster_bin_dir) as plane:
        pgids = set(plane.pids())
        ports = cluster_process.ports_held_by(cluster_process.processes_in_groups(pgids))
        assert len(pgids) == 5
        assert {plane.ports.etcd_client, plane.ports.apiserver, plane.ports.scheduler} <= ports
        raise RuntimeError("simulated test failure")
    assert _leftovers(pgids, ports, timeout=0) == (set(), set())


def test_killing_the_runner_takes_the_control_plane_down(tmp_path: pathlib.Path, cluster_bin_dir: pathlib.Path) -> None:
    """`kill -9` of the owner cannot run any cleanup code: the parent-death signal must do it."""
    runner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.controlplane", "--no-crds", "--workdir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WATTWISE_BIN_DIR": str(cluster_bin_dir)},
    )
    try:
        assert runner.stdout is not None
        banner = [runner.stdout.readline() for _ in range(3)]
        assert banner[0].startswith("control plane ready"), "".join(banner) + runner.stdout.read()
        assert banner[2].strip().startswith("export KUBECONFIG=")
        children = {
            int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent(int(entry)) == runner.pid
        }
        ports = cluster_process.ports_held_by(cluster_process.processes_in_groups(children))
        assert len(children) == 5 and ports
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    assert _leftovers(children, ports, timeout=20) == (set(), set())


def _parent(pid: int) -> int:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])
