"""`wattwise operator`: run the operator. Every flag has an environment variable, for the Deployment's env.

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from wattwise.crd.common import LatencyTier
from wattwise.telemetry import wire


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the operator: PowerBudgets and WorkloadClasses in, GPU power limits out (1 Hz)",
        description="Reconcile PowerBudget and WorkloadClass objects, ingest agent reports, run the control "
        "loop, serve the live state to the scheduler extender.",
    )
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster, then KUBECONFIG")
    p.add_argument(
        "--listen",
        default=_env("WATTWISE_LISTEN", "0.0.0.0:8443"),
        help="host:port for reports, /v1/state, /metrics, /healthz, /readyz (env WATTWISE_LISTEN)",
    )
    p.add_argument("--tls-cert", default=os.environ.get("WATTWISE_TLS_CERT"), help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", default=os.environ.get("WATTWISE_TLS_KEY"), help="... and this key")
    p.add_argument(
        "--agent-service-account",
        action="append",
        default=None,
        metavar="NAMESPACE/NAME",
        help="the node agents' ServiceAccount (repeatable; env WATTWISE_AGENT_SERVICE_ACCOUNT, "
        "default wattwise-system/wattwise-agent)",
    )
    p.add_argument(
        "--audience",
        default=_env("WATTWISE_TOKEN_AUDIENCE", wire.TOKEN_AUDIENCE),
        help="audience the agents' projected tokens are minted for",
    )
    p.add_argument(
        "--tick-interval",
        type=float,
        default=float(_env("WATTWISE_TICK_INTERVAL", "1.0")),
        help="seconds between control ticks, and the report interval agents are told (default 1)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=float(_env("WATTWISE_STALE_AFTER", "3.0")),
        help="seconds after which a node's report is stale and its GPUs count at their limits",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=float(_env("WATTWISE_STATUS_INTERVAL", "5.0")),
        help="seconds between status writes of a budget whose figures changed",
    )
    p.add_argument(
        "--above-cap-window",
        type=float,
        default=float(_env("WATTWISE_ABOVE_CAP_WINDOW", "300")),
        help="window of status.aboveCapFraction, seconds",
    )
    p.add_argument(
        "--default-tier",
        choices=[t.value for t in LatencyTier],
        default=_env("WATTWISE_DEFAULT_TIER", "standard"),
        help="tier of pods that name none",
    )
    p.add_argument(
        "--unknown-gpu-watts",
        type=float,
        default=float(_env("WATTWISE_UNKNOWN_GPU_WATTS", "700")),
        help="what a GPU of a node that never reported counts for",
    )
    p.add_argument(
        "--peering",
        default=_env("WATTWISE_PEERING", "wattwise"),
        help="ClusterKopfPeering object shared by the replicas (env WATTWISE_PEERING)",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        default=_env("WATTWISE_STANDALONE", "") in ("1", "true"),
        help="no peering: exactly one replica must run",
    )
    p.add_argument("--log-level", default=_env("WATTWISE_LOG_LEVEL", "INFO"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    accounts = args.agent_service_account or [_env("WATTWISE_AGENT_SERVICE_ACCOUNT", "wattwise-system/wattwise-agent")]
    if not port.isdigit() or any("/" not in a for a in accounts) or args.tick_interval <= 0 or args.stale_after <= 0:
        print(
            "wattwise operator: --listen HOST:PORT, --agent-service-account NAMESPACE/NAME, positive intervals",
            file=sys.stderr,
        )
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("wattwise operator: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    from wattwise.operator.runtime import Operator, OperatorConfig, tune_gc

    config = OperatorConfig(
        kubeconfig=args.kubeconfig,
        host=host or "0.0.0.0",
        port=int(port),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        agent_service_accounts=tuple(accounts),
        audience=args.audience,
        tick_interval_s=args.tick_interval,
        stale_after_s=args.stale_after,
        status_interval_s=args.status_interval,
        above_cap_window_s=args.above_cap_window,
        default_tier=LatencyTier(args.default_tier),
        unknown_gpu_w=args.unknown_gpu_watts,
        peering=None if args.standalone else args.peering,
    )
    tune_gc()
    asyncio.run(Operator(config).run())
    return 0
