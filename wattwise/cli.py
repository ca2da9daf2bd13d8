"""The `wattwise` command: one entry point for every role.

Each role lives in its own module that exposes `register(subparsers)`; adding a role means adding its module
to `ROLE_MODULES` and nothing else, so components never edit each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import wattwise

#: Modules that add a subcommand. Order is the order `--help` lists them in.
ROLE_MODULES: tuple[str, ...] = (
    "wattwise.commands.validate",
    "wattwise.scheduler_extender.cli",
    "wattwise.node_agent.cli",
    "wattwise.commands.simulate",
    "wattwise.operator.cli",
    "wattwise.commands.status",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wattwise",
        description="Power-aware control for GPU inference clusters: keep facility power under its cap.",
    )
    parser.add_argument("--version", action="version", version=f"wattwise {wattwise.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in ROLE_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover - use `python -m wattwise`
    sys.exit(main())
