"""`wattwise status`: the operator's live state (`GET /v1/state`) as tables a person can read at a glance.

Budgets: mode, cap, draw, headroom (to the target), GPUs limited, stale nodes. Nodes: budgets, GPUs, hottest GPU,
GPUs per tier, node envelope (GPU watts, flexible GPUs), last report. Exit 1 when the operator cannot be reached
or answers something else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence

import httpx
import pydantic

from wattwise.crd.common import LatencyTier
from wattwise.live_state import LIVE_STATE_PATH, LiveState

DEFAULT_URL = "http://localhost:8443"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="print the operator's live state: budgets and nodes")
    p.add_argument(
        "--url",
        default=os.environ.get("WATTWISE_OPERATOR_URL", DEFAULT_URL),
        help=f"operator base URL (env WATTWISE_OPERATOR_URL; default {DEFAULT_URL})",
    )
    p.add_argument("--ca-file", default=os.environ.get("WATTWISE_OPERATOR_CA"), help="CA bundle for HTTPS")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=run)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _kw(watts: float) -> str:
    return f"{watts / 1000:.1f} kW" if abs(watts) >= 1000 else f"{watts:.0f} W"


def _age(at: dt.datetime | None, now: dt.datetime) -> str:
    if at is None:
        return "never"
    return f"{max(0.0, (now - at).total_seconds()):.0f}s ago"


def render(state: LiveState, now: dt.datetime | None = None) -> str:
    now = now or state.generated_at
    budget_rows = []
    for b in sorted(state.budgets, key=lambda v: v.name):
        flags = [f for f, on in (("INFEASIBLE", not b.feasible), ("STALE", b.stale)) if on]
        budget_rows.append(
            [
                b.name,
                str(b.mode),
                _kw(b.cap_w),
                _kw(b.facility_draw_w),
                f"{100 * b.facility_draw_w / b.cap_w:.0f}%",
                _kw(b.headroom_w),
                f"{b.gpus_limited}/{b.gpus}",
                f"{b.stale_nodes}/{b.nodes}",
                " ".join(flags),
            ]
        )
    node_rows = []
    for name, n in sorted(state.nodes.items()):
        tiers = {t: sum(1 for g in n.gpus if g.tier is t) for t in LatencyTier}
        hottest = n.max_temperature_c
        node_rows.append(
            [
                name,
                ",".join(n.budgets) or "-",
                str(len(n.gpus)),
                f"{hottest:.0f}C" if hottest is not None else "-",
                _kw(sum(g.power_w or 0.0 for g in n.gpus)),
                "/".join(str(tiers[t]) for t in LatencyTier),
                f"{_kw(n.envelope.watts)} ({len(n.envelope.flexible)} flex)" if n.envelope is not None else "-",
                "stale" if n.stale else "ok",
                _age(n.last_report_at, now),
            ]
        )
    out = [f"live state at {state.generated_at.isoformat(timespec='seconds')}", ""]
    out.append(
        _table(["BUDGET", "MODE", "CAP", "DRAW", "USE", "HEADROOM", "LIMITED", "STALE", ""], budget_rows)
        if budget_rows
        else "no budgets"
    )
    out.append("")
    out.append(
        _table(
            ["NODE", "BUDGETS", "GPUS", "HOTTEST", "POWER", "CRIT/STD/TOL", "ENVELOPE", "AGENT", "LAST REPORT"],
            node_rows,
        )
        if node_rows
        else "no nodes"
    )
    return "\n".join(out) + "\n"


def fetch(url: str, *, timeout_s: float = 5.0, verify: str | bool = True) -> LiveState:
    response = httpx.get(url.rstrip("/") + LIVE_STATE_PATH, timeout=timeout_s, verify=verify)
    response.raise_for_status()
    return LiveState.model_validate_json(response.content)


def run(args: argparse.Namespace) -> int:
    try:
        state = fetch(args.url, timeout_s=args.timeout, verify=args.ca_file or True)
    except httpx.HTTPStatusError as exc:
        print(
            f"wattwise status: {args.url} answered {exc.response.status_code}: {exc.response.text[:200]}",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as exc:
        print(f"wattwise status: cannot reach the operator at {args.url}: {exc}", file=sys.stderr)
        return 1
    except pydantic.ValidationError as exc:
        print(f"wattwise status: {args.url} did not answer a live state: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(state, dt.datetime.now(dt.UTC)))
    return 0
