"""From runs to figures: per-run metrics, the headline's "done when" criteria, the JSON report, the table.

The metric names are a contract (other tools read the JSON): keep them stable. Facility power is judged on
1-second means, as a meter reports it; latencies on requests that completed within the run (the few still in
flight at the end are counted in `critical_requests_unfinished`, the same way in every run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattwise.crd.common import LatencyTier
from wattwise.sim.fleet import TIERS, RunResult, tier_counts
from wattwise.sim.serving import RequestLog


def _pct(values: np.ndarray[Any, np.dtype[np.float64]], q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if len(finite) else None


def _latency(log: RequestLog | None) -> tuple[np.ndarray[Any, np.dtype[np.float64]], ...]:
    if log is None:
        empty = np.zeros(0)
        return empty, empty
    return log.done_s - log.arrival_s, log.first_token_s - log.arrival_s


def run_metrics(result: RunResult) -> dict[str, Any]:
    """The figures of one run (JSON-ready)."""
    config = result.config
    cap = config.site.cap_w
    share = result.facility_w / cap
    seconds = len(share)
    tokens = {t.value: result.tier_tokens[t] / seconds for t in TIERS}
    crit_latency, crit_ttft = _latency(result.request_logs.get(LatencyTier.CRITICAL))
    std_latency, _ = _latency(result.request_logs.get(LatencyTier.STANDARD))
    jobs = [duration for _end, duration in result.job_completions.get(LatencyTier.TOLERANT, [])]
    energy_kwh = result.energy_j / 3.6e6
    domains = {}
    for domain in config.domains:
        d_share = result.domain_w[domain.name] / domain.cap_w
        domains[domain.name] = {
            "cap_w": domain.cap_w,
            "nodes": len(config.domain_nodes(domain)),
            "seconds_above_cap_fraction": float(np.mean(d_share > 1.0)),
            "draw_p50_fraction": float(np.percentile(d_share, 50)),
            "draw_p99_fraction": float(np.percentile(d_share, 99)),
        }
    return {
        "gpus": config.gpu_count,
        "gpus_per_tier": {t.value: c for t, c in tier_counts(result.gpus).items()},
        "nodes": config.node_count,
        "cap_w": cap,
        "simulated_s": seconds,
        "seconds_above_cap_fraction": float(np.mean(share > 1.0)),
        "facility_draw_p50_fraction": float(np.percentile(share, 50)),
        "facility_draw_p99_fraction": float(np.percentile(share, 99)),
        "facility_draw_max_fraction": float(share.max()),
        "throughput_tokens_per_s": {"total": sum(tokens.values()), **tokens},
        "critical_p99_latency_s": _pct(crit_latency, 99),
        "critical_median_latency_s": _pct(crit_latency, 50),
        "critical_p99_ttft_s": _pct(crit_ttft, 99),
        "critical_requests_completed": int(np.isfinite(crit_latency).sum()),
        "critical_requests_unfinished": int((~np.isfinite(crit_latency)).sum()),
        "standard_p99_latency_s": _pct(std_latency, 99),
        "tolerant_median_completion_s": float(np.median(jobs)) if jobs else None,
        "tolerant_jobs_completed": len(jobs),
        "critical_gpus_limited_while_tolerant_above_floor": len(result.critical_limited_while_tolerant_above_floor),
        "critical_gpus_ever_limited": len(result.critical_ever_limited),
        "gpus_limited_mean": float(result.limited_gpus.mean()),
        "gpu_energy_kwh": energy_kwh,
        "tokens_per_gpu_joule": sum(result.tier_tokens.values()) / result.energy_j if result.energy_j else 0.0,
        "domains": domains,
        "wall_s": result.wall_s,
        "policy_wall_s": result.control_wall_s,
    }


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    detail: str


def headline_criteria(runs: Mapping[str, Mapping[str, Any]]) -> list[Criterion]:
    """The issue's "done when", judged on the (a) baseline, (b) unmanaged and (c) wattwise runs."""
    a, b, c = runs["baseline"], runs["unmanaged"], runs["wattwise"]
    above_b, above_c = b["seconds_above_cap_fraction"], c["seconds_above_cap_fraction"]
    p50 = c["facility_draw_p50_fraction"]
    bad = c["critical_gpus_limited_while_tolerant_above_floor"]
    lat_a, lat_c = a["critical_p99_latency_s"], c["critical_p99_latency_s"]
    lat_ok = lat_a is not None and lat_c is not None and lat_c <= 1.05 * lat_a
    lat_ratio = f"{lat_c / lat_a:.3f}x" if lat_a and lat_c is not None else "n/a"
    tput_a, tput_c = a["throughput_tokens_per_s"]["total"], c["throughput_tokens_per_s"]["total"]
    gain = tput_c / tput_a - 1.0 if tput_a else math.nan
    return [
        Criterion(
            "(c) above cap in <1% of seconds, (b) far more often (>=10x and >=5%)",
            above_c < 0.01 and above_b >= max(0.05, 10 * above_c),
            f"(c) {above_c:.2%}, (b) {above_b:.2%}",
        ),
        Criterion("(c) p50 facility draw >= 95% of cap", p50 >= 0.95, f"{p50:.1%}"),
        Criterion(
            "(c) no critical GPU limited while a tolerant GPU is above its floor",
            bad == 0,
            f"{bad} critical GPU(s)",
        ),
        Criterion("(c) critical p99 latency within 5% of (a)", lat_ok, f"(c)/(a) = {lat_ratio}"),
        Criterion("(c) total throughput >= (a) + 15%", gain >= 0.15, f"{gain:+.1%}"),
    ]


def build_report(
    scenario: str,
    trace_name: str,
    params: Mapping[str, Any],
    results: Sequence[tuple[str, str, RunResult]],
) -> dict[str, Any]:
    """The JSON report: `{"runs": {name: metrics}}` plus what was run and, for the headline, the criteria."""
    runs = {name: run_metrics(result) for name, _label, result in results}
    report: dict[str, Any] = {
        "scenario": scenario,
        "trace": trace_name,
        "params": dict(params),
        "labels": {name: label for name, label, _ in results},
        "runs": runs,
    }
    if {"baseline", "unmanaged", "wattwise"} <= runs.keys():
        criteria = headline_criteria(runs)
        report["criteria"] = [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in criteria]
        report["passed"] = all(c.passed for c in criteria)
    return report


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "s":
        return f"{value:.2f} s"
    if kind == "tok":
        return f"{value:,.0f}"
    return str(value)


_ROWS: tuple[tuple[str, str, str], ...] = (
    ("GPUs", "gpus", "int"),
    ("seconds above cap", "seconds_above_cap_fraction", "pct"),
    ("facility draw p50 / cap", "facility_draw_p50_fraction", "pct"),
    ("facility draw p99 / cap", "facility_draw_p99_fraction", "pct"),
    ("throughput total (tok/s)", "throughput_tokens_per_s.total", "tok"),
    ("  critical", "throughput_tokens_per_s.critical", "tok"),
    ("  standard", "throughput_tokens_per_s.standard", "tok"),
    ("  tolerant", "throughput_tokens_per_s.tolerant", "tok"),
    ("critical p99 latency", "critical_p99_latency_s", "s"),
    ("critical p99 TTFT", "critical_p99_ttft_s", "s"),
    ("tolerant median job completion", "tolerant_median_completion_s", "s"),
    ("critical GPUs ever limited", "critical_gpus_ever_limited", "int"),
    ("critical limited, tolerant > floor", "critical_gpus_limited_while_tolerant_above_floor", "int"),
    ("GPUs limited (mean)", "gpus_limited_mean", "int1"),
)


def _get(metrics: Mapping[str, Any], path: str) -> Any:
    value: Any = metrics
    for part in path.split("."):
        value = value[part]
    return value


def format_table(report: Mapping[str, Any]) -> str:
    """The summary table (and the criteria, when present) as plain text."""
    runs: Mapping[str, Mapping[str, Any]] = report["runs"]
    names = list(runs)
    width = 36
    col = 14
    lines = [f"{'':<{width}}" + "".join(f"{n:>{col}}" for n in names)]
    for label, path, kind in _ROWS:
        cells = []
        for n in names:
            value = _get(runs[n], path)
            cells.append(f"{value:.1f}" if kind == "int1" else _fmt(value, kind))
        lines.append(f"{label:<{width}}" + "".join(f"{c:>{col}}" for c in cells))
    first = runs[names[0]]
    lines.append(
        f"cap {first['cap_w'] / 1000:.1f} kW, {first['simulated_s']} simulated s per run, trace: {report['trace']}"
    )
    for name in names:
        lines.append(f"  {report['labels'][name]}")
    lines.append(
        "wall time: "
        + ", ".join(f"{n} {runs[n]['wall_s']:.1f} s" for n in names)
        + (f" (policy {runs['wattwise']['policy_wall_s']:.1f} s)" if "wattwise" in runs else "")
    )
    if "criteria" in report:
        lines.append("")
        lines.append("Done when:")
        for c in report["criteria"]:
            lines.append(f"  [{'PASS' if c['passed'] else 'FAIL'}] {c['name']}: {c['detail']}")
    return "\n".join(lines)
