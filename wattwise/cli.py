"""The `wattwise` command: one entry point for every role.

Each role lives in its own module that exposes `register(subparsers)`; adding a role means adding its module
to `ROLE_MODULES` and nothing else, so components never edit each other's code. Only the chosen role's module is
imported (all of them for `--help`): a node agent must not pay for the operator's and extender's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import wattwise

#: Subcommand -> the module that registers it. Order is the order `--help` lists them in.
ROLE_MODULES: dict[str, str] = {
    "operator": "wattwise.operator.cli",
    "agent": "wattwise.node_agent.cli",
    "extender": "wattwise.scheduler_extender.cli",
    "simulate": "wattwise.commands.simulate",
    "status": "wattwise.commands.status",
    "validate": "wattwise.commands.validate",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with just `only` when the command line names a known one."""
    parser = argparse.ArgumentParser(
        prog="wattwise",
        description="Power-aware control for GPU inference clusters: keep facility power under its cap.",
    )
    parser.add_argument("--version", action="version", version=f"wattwise {wattwise.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for command, module in ROLE_MODULES.items():
        if only is None or command == only:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in ROLE_MODULES else None)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover - use `python -m wattwise`
    sys.exit(main())
