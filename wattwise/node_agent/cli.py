"""`wattwise agent`: run the node agent. Every flag has an environment variable, for the DaemonSet's env.

Exit codes: 0 on SIGTERM/SIGINT (after restoring limits unless --keep-limits-on-exit), 3 when NVML cannot
work on this node at all (the message says why), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import socket
import sys
import threading
from types import FrameType

from prometheus_client import CollectorRegistry

from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.metrics import AgentCollector
from wattwise.node_agent.nvml import NvmlUnavailable
from wattwise.node_agent.podresources.client import DEFAULT_SOCKET, PodResourcesClient
from wattwise.node_agent.reporter import Reporter
from wattwise.node_agent.server import HealthServer
from wattwise.telemetry import messages, vocabulary

log = logging.getLogger("wattwise.node_agent")

DEFAULT_LISTEN = "0.0.0.0:9402"
#: Faster than this the envelope loop would spend its time in NVML calls (a power read is ~0.1-1 ms per GPU).
MIN_ENVELOPE_INTERVAL_S = 0.01


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_flag(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes", "on")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent",
        help="run the node agent (DaemonSet): GPU telemetry, pod attribution, power limits",
        description="Sample every GPU at 1 Hz, report to the operator, apply the limits it returns.",
    )
    p.add_argument(
        "--backend",
        choices=["nvml", "sim"],
        default=_env("WATTWISE_BACKEND", "nvml"),
        help="nvml: the real GPUs; sim: simulated GPUs (env WATTWISE_BACKEND)",
    )
    p.add_argument(
        "--sim-gpus",
        type=int,
        default=int(_env("WATTWISE_SIM_GPUS", "8") or 8),
        help="simulated GPU count (env WATTWISE_SIM_GPUS)",
    )
    p.add_argument(
        "--sim-model",
        default=_env("WATTWISE_SIM_MODEL", "h100"),
        help="simulated GPU model: h100, a100, a40 (env WATTWISE_SIM_MODEL)",
    )
    p.add_argument(
        "--sim-seed",
        type=int,
        default=int(_env("WATTWISE_SIM_SEED", "0") or 0),
        help="seed of the simulated load and GPU UUIDs (env WATTWISE_SIM_SEED)",
    )
    p.add_argument(
        "--sim-lose",
        action="append",
        default=[],
        metavar="INDEX@SECONDS",
        help="simulate GPU INDEX falling off the bus SECONDS after start (repeatable; sim backend only)",
    )
    p.add_argument(
        "--node-name",
        default=_env("WATTWISE_NODE_NAME") or socket.gethostname(),
        help="this node's name, from the downward API (env WATTWISE_NODE_NAME)",
    )
    p.add_argument("--pod-name", default=_env("WATTWISE_POD_NAME"), help="the agent's pod (env WATTWISE_POD_NAME)")
    p.add_argument(
        "--operator-url",
        default=_env("WATTWISE_OPERATOR_URL"),
        help="operator base URL; unset: standalone, metrics only (env WATTWISE_OPERATOR_URL)",
    )
    p.add_argument(
        "--token-file",
        default=_env("WATTWISE_TOKEN_FILE"),
        help=f"projected ServiceAccount token, re-read per request (env WATTWISE_TOKEN_FILE; default "
        f"{vocabulary.DEFAULT_TOKEN_FILE} if it exists; 'none' sends no token)",
    )
    p.add_argument(
        "--ca-file",
        default=_env("WATTWISE_OPERATOR_CA"),
        help="CA bundle for the operator's TLS certificate (env WATTWISE_OPERATOR_CA)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=float(_env("WATTWISE_INTERVAL", "1.0") or 1.0),
        help="sampling interval in seconds (env WATTWISE_INTERVAL)",
    )
    p.add_argument(
        "--envelope-interval",
        type=float,
        default=float(_env("WATTWISE_ENVELOPE_INTERVAL", "0.1") or 0.1),
        help="seconds between two re-shares of the operator's node envelope (tolerant GPUs capped to what critical "
        "and standard ones leave); 0 ignores envelopes (env WATTWISE_ENVELOPE_INTERVAL; default 0.1)",
    )
    p.add_argument(
        "--listen",
        default=_env("WATTWISE_LISTEN", DEFAULT_LISTEN),
        help=f"host:port for /metrics, /healthz, /readyz (env WATTWISE_LISTEN; default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--pod-resources-socket",
        default=_env("WATTWISE_POD_RESOURCES_SOCKET"),
        help=f"kubelet PodResources socket (env WATTWISE_POD_RESOURCES_SOCKET; default {DEFAULT_SOCKET} "
        "if it exists; 'none' disables pod attribution)",
    )
    p.add_argument(
        "--keep-limits-on-exit",
        action="store_true",
        default=_env_flag("WATTWISE_KEEP_LIMITS_ON_EXIT"),
        help="leave the limits in place on exit instead of restoring defaults",
    )
    p.add_argument(
        "--fail-safe-grace",
        type=float,
        default=float(_env("WATTWISE_FAIL_SAFE_GRACE", "30") or 30),
        help="seconds without the operator before the fail-safe, until the operator says otherwise",
    )
    p.add_argument(
        "--fail-safe-fraction",
        type=float,
        default=float(_env("WATTWISE_FAIL_SAFE_FRACTION", "0.7") or 0.7),
        help="fail-safe limit as a fraction of the default limit, until the operator says otherwise (0: keep limits)",
    )
    p.add_argument("--log-level", default=_env("WATTWISE_LOG_LEVEL", "INFO"), help="(env WATTWISE_LOG_LEVEL)")
    p.set_defaults(func=run)


def _optional_path(value: str | None, default: str) -> pathlib.Path | None:
    if value is None:
        return pathlib.Path(default) if os.path.exists(default) else None
    return None if value.lower() == "none" else pathlib.Path(value)


def build_backend(args: argparse.Namespace) -> NvmlBackend:
    if args.backend == "sim":
        from wattwise.node_agent.simnvml import SimNvml

        lib = SimNvml(args.sim_gpus, args.sim_model, seed=args.sim_seed)
        for spec in args.sim_lose:
            index, _, seconds = spec.partition("@")
            try:
                lib.lose_after(int(index), float(seconds or 0))
            except ValueError:
                raise ValueError(f"--sim-lose wants INDEX@SECONDS, got {spec!r}") from None
        return NvmlBackend(lib, name="sim")
    import pynvml

    return NvmlBackend(pynvml, name="nvml")


def build_agent(args: argparse.Namespace) -> NodeAgent:
    fail_safe = None
    if args.fail_safe_fraction > 0:
        fail_safe = messages.FailSafePolicy(
            grace_period_seconds=args.fail_safe_grace, limit_fraction=args.fail_safe_fraction
        )
    config = AgentConfig(
        node=args.node_name,
        interval_s=args.interval,
        keep_limits_on_exit=args.keep_limits_on_exit,
        pod_name=args.pod_name,
        default_fail_safe=fail_safe,
        envelope_interval_s=args.envelope_interval,
    )
    reporter = None
    if args.operator_url:
        token = _optional_path(args.token_file, vocabulary.DEFAULT_TOKEN_FILE)
        reporter = Reporter(args.operator_url, token, timeout_s=min(2.0, 0.8 * args.interval), ca_file=args.ca_file)
    socket_path = _optional_path(args.pod_resources_socket, DEFAULT_SOCKET)
    pods = PodResourcesClient(str(socket_path)) if socket_path is not None else None
    return NodeAgent(config, build_backend(args), reporter=reporter, pods=pods)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.interval <= 0 or not 0 <= args.fail_safe_fraction <= 1 or args.sim_gpus < 0:
        print(
            "wattwise agent: --interval must be > 0, --fail-safe-fraction in [0, 1], --sim-gpus >= 0", file=sys.stderr
        )
        return 2
    if not (args.envelope_interval == 0 or MIN_ENVELOPE_INTERVAL_S <= args.envelope_interval <= args.interval):
        print(
            f"wattwise agent: --envelope-interval must be 0 (off) or between {MIN_ENVELOPE_INTERVAL_S} s and "
            f"--interval ({args.interval} s), got {args.envelope_interval}",
            file=sys.stderr,
        )
        return 2
    try:
        agent = build_agent(args)
    except ValueError as exc:
        print(f"wattwise agent: {exc}", file=sys.stderr)
        return 2
    try:
        agent.start()
    except NvmlUnavailable as exc:
        print(f"wattwise agent: NVML is not usable on this node: {exc}", file=sys.stderr)
        return 3

    registry = CollectorRegistry()
    registry.register(AgentCollector(args.node_name, lambda: agent.snapshot, lambda: agent.envelopes.status))
    host, _, port = args.listen.rpartition(":")
    server = HealthServer(
        host or "0.0.0.0",
        int(port),
        registry,
        lambda: agent.snapshot,
        stale_after_s=max(10.0, 5 * args.interval),
        envelope=lambda: agent.envelopes.status,
    )
    server.start()
    log.info(
        "agent on %s: backend %s, %d GPU(s), operator %s, node envelopes %s, metrics on %s",
        args.node_name,
        agent.backend.name,
        len(agent.backend.uuids),
        args.operator_url or "none (standalone)",
        f"every {args.envelope_interval:g} s" if agent.envelopes.enabled else "off",
        f"{host or '0.0.0.0'}:{server.port}",
    )

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run(stop)
    finally:
        agent.close()
        server.stop()
    return 0
