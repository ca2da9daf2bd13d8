"""How fast the operator can parse resources: PowerBudget and WorkloadClass objects per second."""

from __future__ import annotations

import pathlib
import time

import yaml

from wattwise.crd.parse import parse_resource

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def main(argv: list[str]) -> None:
    objs = [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]
    objs = [o for o in objs if o["apiVersion"].startswith("wattwise")]
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        parse_resource(objs[i % len(objs)])
    elapsed = time.perf_counter() - started
    print(f"parse_resource: {n / elapsed:,.0f} objects/s ({elapsed / n * 1e6:.1f} us each)")
