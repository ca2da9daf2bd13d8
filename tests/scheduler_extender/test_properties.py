"""The promise behind reservations, property-tested: however pods arrive and wherever the scheduler puts them,
the pods the extender lets through never add up to more than a budget could give before the telemetry
caught up: guaranteed headroom for critical and standard pods, the oversubscription bound for every pod."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.scheduler_extender.builders import args, budget, node, pod, state
from tests.scheduler_extender.conftest import FakeClock
from wattwise.crd.common import LatencyTier
from wattwise.live_state import LiveState
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.pod_power import TIER_SHARE
from wattwise.scheduler_extender.settings import ExtenderSettings

BUDGETS = ["rack-0", "rack-1", "rack-2"]


@st.composite
def fleets(draw: st.DrawFn) -> LiveState:
    budgets = [
        budget(
            name,
            guaranteed_headroom_w=draw(st.floats(-1_000, 12_000)),
            allocated_default_limit_w=draw(st.floats(0, 10_000)),
            pue=draw(st.sampled_from([1.0, 1.1, 1.4])),
        )
        for name in BUDGETS
    ]
    budgets.append(budget("hall", cap_w=30_000.0, guaranteed_headroom_w=draw(st.floats(0, 20_000))))
    nodes = {
        f"n{i}": node(
            [BUDGETS[i % 3], *(["hall"] if i % 2 else [])],
            default_limit_w=draw(st.sampled_from([350.0, 700.0])),
            temperature_c=draw(st.floats(40, 90)),
        )
        for i in range(6)
    }
    return state(budgets, nodes)


arrivals = st.lists(
    st.tuples(st.sampled_from(list(LatencyTier)), st.integers(1, 4), st.integers(0, 5), st.booleans()),
    min_size=1,
    max_size=25,
)


@given(live=fleets(), pods=arrivals)
def test_admitted_pods_never_exceed_what_the_state_allowed(
    live: LiveState, pods: list[tuple[LatencyTier, int, int, bool]]
) -> None:
    app = create_app(ExtenderSettings(), refresh=False, clock=FakeClock())
    app.state.cache.update(live)
    service = app.state.service
    names = list(live.nodes)
    guaranteed = {b.name: 0.0 for b in live.budgets}
    nameplate = {b.name: 0.0 for b in live.budgets}
    for i, (tier, gpus, pick, narrow) in enumerate(pods):
        doc = pod(f"p{i}", gpus=gpus, tier=tier.value)
        passed = service.handle("filter", _body(doc, names))["NodeNames"]
        if not passed:
            continue
        chosen = passed[pick % len(passed)]  # whatever the scheduler's other plugins prefer
        service.handle("prioritize", _body(doc, [chosen] if narrow else passed))
        view = live.nodes[chosen]
        for name in view.budgets:
            b = next(x for x in live.budgets if x.name == name)
            plate = gpus * (view.default_limit_w or 0.0) * b.pue
            nameplate[name] += plate
            if tier is LatencyTier.TOLERANT:
                # a tolerant pod is admitted only while everything admitted so far fits under the bound
                assert b.feasible and nameplate[name] <= b.oversubscription_bound_w - b.nameplate_w + 1e-6, name
            else:
                guaranteed[name] += plate * TIER_SHARE[tier]
                assert guaranteed[name] <= max(b.guaranteed_headroom_w, 0.0) + 1e-6, name


def _body(doc: dict[str, Any], nodes: list[str]) -> bytes:
    return json.dumps(args(doc, nodes)).encode()
