"""`python -m wattwise.node_agent [flags]`: the agent alone, the DaemonSet's command.

Same flags as `wattwise agent`, but only the agent's modules are imported: `wattwise` builds every role's
parser (and imports what those roles import), which would add tens of MiB to a process that runs on every
GPU node.
"""

import argparse
import sys

from wattwise.node_agent import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wattwise.node_agent")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
