"""`wattwise extender`: serve the scheduler extender over HTTP(S) with uvicorn."""

from __future__ import annotations

import argparse
import logging

from wattwise.scheduler_extender.settings import ExtenderSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "extender",
        help="scheduler extender: filter and score GPU pods by facility headroom and latency tier",
        description="Serve POST /filter and /prioritize for kube-scheduler (extender v1), /healthz, "
        "/readyz, /metrics. Other settings come from WATTWISE_EXTENDER_* environment variables.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8888, help="port to listen on (default: %(default)s)")
    p.add_argument(
        "--operator-url",
        help="base URL of the operator's live-state API (env WATTWISE_EXTENDER_OPERATOR_URL)",
    )
    p.add_argument(
        "--tls-cert-file",
        help="serve HTTPS with this certificate (PEM); set enableHTTPS in the scheduler config",
    )
    p.add_argument("--tls-key-file", help="private key for --tls-cert-file (PEM)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn  # deferred: `wattwise --help` need not import the server stack

    from wattwise.scheduler_extender.app import create_app

    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        print("wattwise extender: --tls-cert-file and --tls-key-file go together")
        return 2
    overrides = {"operator_url": args.operator_url} if args.operator_url else {}
    settings = ExtenderSettings(**overrides)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert_file,
        ssl_keyfile=args.tls_key_file,
        log_level=args.log_level,
        access_log=False,  # the scheduler calls twice per pod; metrics carry the counts
    )
    return 0
