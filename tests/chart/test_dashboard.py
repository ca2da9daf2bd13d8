"""The Grafana dashboard queries only metrics the components really export, and shows what the issue asks for.

The exported names come from the components' own registries (what a scrape would list), not from a copy of
the names: a metric renamed in code fails this test until the dashboard follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.chart.helm import CHART

DASHBOARD = CHART / "dashboards" / "wattwise.json"
_METRIC = re.compile(r"\bwattwise_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported_metrics() -> dict[str, str]:
    """Sample name -> family type, for every metric the operator, extender and agent register."""
    from wattwise.node_agent.agent import Snapshot
    from wattwise.node_agent.metrics import AgentCollector
    from wattwise.operator.controller import Controller
    from wattwise.operator.metrics import OperatorMetrics
    from wattwise.operator.records import ClusterState
    from wattwise.scheduler_extender.metrics import ExtenderMetrics

    registry = CollectorRegistry()
    ExtenderMetrics(registry, lambda: 0.0)
    registry.register(AgentCollector("node", Snapshot))
    OperatorMetrics(registry, Controller(ClusterState()))
    names = {}
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
    return names


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


@pytest.fixture(scope="module")
def queried(dashboard: dict[str, Any]) -> set[str]:
    return {name for expr in _expressions(dashboard) for name in _METRIC.findall(expr)}


def test_every_queried_metric_is_exported_by_a_component(queried: set[str]) -> None:
    exported = exported_metrics()
    assert queried, "the dashboard queries no wattwise_ metric"
    assert sorted(queried - set(exported)) == []


def test_counters_are_queried_through_rate_or_increase(dashboard: dict[str, Any]) -> None:
    exported = exported_metrics()
    for expr in _expressions(dashboard):
        for name in _METRIC.findall(expr):
            if exported.get(name) in ("counter", "histogram") and name.endswith(("_total", "_bucket")):
                assert re.search(rf"(rate|increase)\(\s*{name}", expr), f"{name} used raw in {expr!r}"


@pytest.mark.parametrize(
    "metric",
    [
        "wattwise_budget_facility_draw_watts",  # facility power ...
        "wattwise_budget_cap_watts",  # ... against the cap
        "wattwise_budget_headroom_watts",
        "wattwise_budget_tier_power_watts",
        "wattwise_budget_gpus_limited",
        "wattwise_gpu_temperature_celsius",
        "wattwise_extender_decisions_total",
    ],
)
def test_dashboard_shows_what_operators_need(queried: set[str], metric: str) -> None:
    assert metric in queried


def test_panels_are_laid_out_without_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
