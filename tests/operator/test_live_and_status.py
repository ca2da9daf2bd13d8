"""The live state's arithmetic, checks beyond the schema, and `wattwise status` rendering it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.operator import builders as b
from wattwise.commands import status as status_command
from wattwise.crd.common import LatencyTier
from wattwise.operator import checks
from wattwise.operator.controller import Controller
from wattwise.operator.records import NodeRecord

WALL = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def ticked(**spec: Any) -> Controller:
    state = b.cluster(
        {"n1": {"rack": "r1", "nvidia.com/gpu.product": "NVIDIA-H100"}, "idle": {"rack": "r9"}},
        {
            "rack": b.budget_spec(
                4_000, targetUtilization=0.92, nonGpuPower={"perNodeBaseWatts": 100, "pue": 1.25}, **spec
            )
        },
        {
            "chat": b.class_spec("critical", expectedWattsPerGpu=500),
            "batch": b.class_spec("tolerant", floor={"watts": 250}),
        },
        {
            "n1": b.report(
                "n1", [b.gpu("G0", 0, pods=[("default", "c")]), b.gpu("G1", 1, pods=[("default", "t")], temperature=81)]
            )
        },
        [b.pod("c", "n1", klass="chat"), b.pod("t", "n1", klass="batch")],
    )
    controller = Controller(state)
    controller.tick(100.5, WALL)
    return controller


def test_budget_view_follows_the_documented_arithmetic() -> None:
    live = ticked().live
    assert live is not None
    view = live.budget("rack")
    assert view is not None
    assert view.facility_draw_w == pytest.approx((600 + 100) * 1.25)
    assert view.headroom_w == pytest.approx(0.92 * 4_000 - 875)
    assert view.non_gpu_w == pytest.approx(125)
    assert view.committed_w.critical == pytest.approx(500 * 1.25)  # class expectation x PUE
    assert view.committed_w.tolerant == pytest.approx(700 * 1.25)  # no expectation: the GPU's default limit
    assert view.tolerant_floors_w == pytest.approx(250 * 1.25)
    assert view.guaranteed_headroom_w == pytest.approx(3_680 - 125 - 625 - 0 - 312.5)
    assert view.allocated_default_limit_w == 1_400
    node = live.nodes["n1"]
    assert node.budgets == ["rack"] and node.gpu_product == "NVIDIA-H100" and node.max_temperature_c == 81
    assert [g.tier for g in node.gpus] == [LatencyTier.CRITICAL, LatencyTier.TOLERANT]
    assert live.nodes["idle"].stale and live.nodes["idle"].budgets == []
    assert live.classes["chat"].expected_watts_per_gpu == 500


def test_status_command_prints_budgets_and_nodes() -> None:
    live = ticked().live
    assert live is not None
    text = status_command.render(live, WALL + dt.timedelta(seconds=3))
    lines = text.splitlines()
    assert lines[2].split() == ["BUDGET", "MODE", "CAP", "DRAW", "USE", "HEADROOM", "LIMITED", "STALE"]
    assert lines[3].split()[:5] == ["rack", "Monitor", "4.0", "kW", "875"]
    node_line = next(line for line in lines if line.startswith("n1"))
    assert "81C" in node_line and "1/0/1" in node_line and "4s ago" in node_line  # reported 0.5 s before the tick
    assert next(line for line in lines if line.startswith("idle")).split()[-2:] == ["stale", "never"]


def test_node_envelopes_in_the_live_state_and_status() -> None:
    controller = ticked(mode="Enforce")
    live, decision = controller.live, controller.decision
    assert live is not None and decision is not None
    envelope = live.nodes["n1"].envelope
    assert envelope is not None and envelope.watts == decision.envelopes["n1"].watts
    assert (envelope.protected, envelope.flexible) == (["G0"], ["G1"])  # critical chat, tolerant batch
    assert live.nodes["idle"].envelope is None
    lines = status_command.render(live, WALL).splitlines()
    assert "ENVELOPE" in next(line for line in lines if line.startswith("NODE")).split()
    assert "(1 flex)" in next(line for line in lines if line.startswith("n1"))
    monitored = ticked().live  # Monitor: no envelope, and a dash in its column
    assert monitored is not None and monitored.nodes["n1"].envelope is None
    row = next(line for line in status_command.render(monitored, WALL).splitlines() if line.startswith("n1"))
    assert row.split()[-4] == "-"


def test_status_command_fails_cleanly_without_an_operator(capsys: pytest.CaptureFixture[str]) -> None:
    from wattwise.cli import main

    assert main(["status", "--url", "http://127.0.0.1:9", "--timeout", "0.5"]) == 1
    assert "cannot reach the operator" in capsys.readouterr().err


def test_findings_for_specs_that_will_not_do_what_was_meant() -> None:
    nodes = {f"n{i}": NodeRecord(f"n{i}", {"rack": "r1"}, 8) for i in range(4)}
    assert checks.budget_findings(b.budget_spec(10_000, "nowhere"), nodes)[0].startswith("nodeSelector selects no")
    heavy = b.budget_spec(1_000, nonGpuPower={"perNodeBaseWatts": 300, "pue": 1.2})
    assert "no GPU power is left" in checks.budget_findings(heavy, nodes)[0]
    unsafe = b.budget_spec(10_000, mode="Enforce", failSafe={"limitWatts": 500})
    assert "above the cap" in checks.budget_findings(unsafe, nodes)[0]
    assert checks.budget_findings(b.budget_spec(30_000), nodes) == []
    odd = b.class_spec("critical", expectedWattsPerGpu=200, floor={"watts": 300}, ceilingWatts=600)
    assert "below floor.watts" in checks.class_findings(odd)[0]


def test_a_pod_listed_on_a_gpu_is_counted_even_before_the_pod_watch_shows_it() -> None:
    state = b.cluster(
        {"n1": {"rack": "r1"}},
        {"rack": b.budget_spec(4_000)},
        reports={"n1": b.report("n1", [b.gpu("G0", pods=[("default", "new")]), b.gpu("G1", 1)])},
    )
    controller = Controller(state)
    controller.tick(100.5, WALL)
    view = controller.live.budget("rack")  # type: ignore[union-attr]
    assert view is not None
    assert (view.committed_w.standard, view.allocated_default_limit_w) == (700.0, 700.0)
    assert controller.live.nodes["n1"].gpus[0].pod == "default/new"  # type: ignore[union-attr]
