"""Run the control-plane processes so that none outlives its owner, and see what they hold while they run.

Each process gets its own session (so a whole process group can be signalled), a log file, and a parent-death
signal (so even a `kill -9` of pytest takes them down: SIGKILL, because they all get it at once and an API
server whose etcd has just vanished can hang in its graceful shutdown). Stopping sends SIGTERM to each group
in reverse start order, waits, then SIGKILLs what is left. The /proc readers let a test prove that nothing
stays behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping

PR_SET_PDEATHSIG = 1
TCP_LISTEN = "0A"


class ProcessDied(RuntimeError):
    pass


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclasses.dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Owns a set of long-running processes; `stop()` is safe to call any number of times."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self._log_dir = log_dir
        self._processes: list[ManagedProcess] = []

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return tuple(self._processes)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log = self._log_dir / f"{name}.log"
        with log.open("ab") as sink:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        process = ManagedProcess(name, popen, log)
        self._processes.append(process)
        return process

    def check(self) -> None:
        """Raise with the log tail if any process has exited: a dead component must fail fast, not time out."""
        for process in self._processes:
            code = process.popen.poll()
            if code is not None:
                raise ProcessDied(f"{process.name} exited with {code}; log {process.log}:\n{process.log_tail()}")

    def stop(self, grace_seconds: float = 10.0) -> None:
        for process in reversed(self._processes):
            _stop_group(process.popen, grace_seconds)
        self._processes.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_group(popen: subprocess.Popen[bytes], grace_seconds: float) -> None:
    pgid = popen.pid  # start_new_session makes the child its group's leader
    if popen.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            popen.wait()
    _signal_group(pgid, signal.SIGKILL)  # anything the leader forked and left behind


def reserve_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open together, then released for the servers)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def http_ready(url: str, *, ca_file: pathlib.Path | None = None, token: str | None = None) -> bool:
    """True when `url` answers 200; connection errors and other statuses mean "not yet"."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_until(ready: Callable[[], bool], what: str, supervisor: Supervisor, timeout: float) -> float:
    """Poll until `ready()`; fail early if a supervised process dies. Returns the seconds waited."""
    start = time.monotonic()
    while True:
        supervisor.check()
        if ready():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


# --- what processes hold, read from /proc (Linux) -------------------------------------------------------


def listening_ports() -> dict[int, int]:
    """Socket inode -> port for every TCP socket in LISTEN state on this host."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == TCP_LISTEN:
                    found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(FileNotFoundError, PermissionError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def ports_held_by(pids: Iterable[int]) -> set[int]:
    listening = listening_ports()
    return {listening[inode] for pid in pids for inode in socket_inodes(pid) if inode in listening}


def processes_in_groups(pgids: Iterable[int]) -> set[int]:
    """PIDs of live (non-zombie) processes whose process group is one of `pgids`."""
    wanted = set(pgids)
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in wanted and state != "Z":
            found.add(int(entry))
    return found
