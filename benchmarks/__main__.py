"""Run every benchmark module (or the ones named: `python -m benchmarks policy agent`)."""

from __future__ import annotations

import importlib
import pathlib
import sys
import time


def main(argv: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv]
    if not wanted:
        print(f"no benchmark matches {argv}; have: {', '.join(n.removeprefix('bench_') for n in names)}")
        return 2
    for name in wanted:
        print(f"== {name.removeprefix('bench_')} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main([])
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
