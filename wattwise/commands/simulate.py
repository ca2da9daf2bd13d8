"""`wattwise simulate`: run a named scenario on the simulated fleet and report how the site fared.

Prints a summary table (or, with --json, the report as one JSON object on stdout) and writes `report.json`
and `power.png` to --out. The headline scenario runs (a) baseline, (b) unmanaged and (c) wattwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any

from wattwise.sim.fleet import RunResult, run_fleet
from wattwise.sim.report import build_report, format_table
from wattwise.sim.scenarios import HeadlineParams, headline
from wattwise.sim.trace import Trace, TraceError, load_trace, shipped_trace, synthetic_trace

SCENARIOS = ("headline", "synthetic", "heatwave")
HEATWAVE_PUE = 1.4


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a scenario on the simulated fleet (no GPU, no cluster)",
        description="Run a scenario on a simulated GPU fleet with the real policy in the loop.",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="headline",
        help="headline: the shipped Azure trace; synthetic: generated bursty/diurnal arrivals; "
        f"heatwave: headline with the site's PUE patched from 1.15 to {HEATWAVE_PUE} mid-run",
    )
    p.add_argument(
        "--trace", type=pathlib.Path, help="request trace CSV with columns TIMESTAMP, ContextTokens, GeneratedTokens"
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="request-rate multiplier applied to the trace (default 1.0)"
    )
    p.add_argument(
        "--gpus", type=int, default=HeadlineParams.gpus, help="N: GPUs the cap fits at full power (default %(default)s)"
    )
    p.add_argument(
        "--extra-gpus",
        type=float,
        default=HeadlineParams.extra_gpus,
        help="extra GPUs of the oversubscribed runs, as a share of N (default %(default)s)",
    )
    p.add_argument(
        "--gpu",
        choices=("h100", "a100"),
        default=HeadlineParams.gpu,
        help="GPU model of the site (default %(default)s)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=HeadlineParams.target_utilization,
        help="the budget's targetUtilization, share of the cap to aim at (default %(default)s)",
    )
    p.add_argument(
        "--no-envelopes",
        action="store_true",
        help="run the wattwise run as a 1 Hz-only loop: no node envelopes between decisions",
    )
    p.add_argument(
        "--rack-nodes",
        type=int,
        default=0,
        help="also give every K nodes a rack PDU budget inside the site (default: none)",
    )
    p.add_argument(
        "--rack-cap",
        type=float,
        default=HeadlineParams.rack_cap_fraction,
        help="a rack's cap as a share of its nodes' full IT power (default %(default)s)",
    )
    p.add_argument("--duration", type=float, help="simulated seconds per run (default: the whole trace)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("reports"),
        help="directory for report.json and power.png (default %(default)s)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--check", action="store_true", help="exit 1 when a 'done when' criterion fails")
    p.set_defaults(func=run)


def _trace(args: argparse.Namespace) -> Trace:
    base = load_trace(args.trace) if args.trace else shipped_trace()
    if args.scenario == "synthetic":
        duration = args.duration or 3600.0
        return synthetic_trace(duration, len(base) / max(base.duration_s, 1.0), seed=args.seed, like=base)
    return base


def run(args: argparse.Namespace) -> int:
    if args.scale <= 0:
        print("wattwise simulate: --scale must be positive", file=sys.stderr)
        return 2
    if not 0 < args.target <= 1:
        print("wattwise simulate: --target must be in (0, 1]", file=sys.stderr)
        return 2
    try:
        trace = _trace(args)
    except TraceError as exc:
        print(f"wattwise simulate: {exc}", file=sys.stderr)
        return 2
    params = HeadlineParams(
        gpus=args.gpus,
        extra_gpus=args.extra_gpus,
        gpu=args.gpu,
        critical_scale=HeadlineParams.critical_scale * args.scale,
        standard_scale=HeadlineParams.standard_scale * args.scale,
        target_utilization=args.target,
        envelopes=not args.no_envelopes,
        heatwave_pue=HEATWAVE_PUE if args.scenario == "heatwave" else None,
        rack_nodes=args.rack_nodes,
        rack_cap_fraction=args.rack_cap,
        duration_s=args.duration,
        seed=args.seed,
    )
    try:
        runs = headline(params, trace)
    except ValueError as exc:
        print(f"wattwise simulate: {exc}", file=sys.stderr)
        return 2
    results: list[tuple[str, str, RunResult]] = []
    for r in runs:
        if not args.json:
            print(f"running {r.label} ...", file=sys.stderr, flush=True)
        try:
            results.append((r.name, r.label, run_fleet(r.name, r.config, r.controller)))
        except ValueError as exc:
            print(f"wattwise simulate: {exc}", file=sys.stderr)
            return 2
    param_dict: dict[str, Any] = dataclasses.asdict(params)
    param_dict["scale"] = args.scale
    report = build_report(args.scenario, trace.name, param_dict, results)

    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    plot_path = args.out / "power.png"
    if not args.no_plot:
        from wattwise.sim.plot import write_plot

        write_plot(plot_path, results, f"{args.scenario}: facility power vs cap ({trace.name})")
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        print(f"\nreport: {report_path}" + ("" if args.no_plot else f"   plot: {plot_path}"))
    if args.check and not report.get("passed", True):
        return 1
    return 0
