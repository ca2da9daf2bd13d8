"""Prometheus metrics of the operator: per budget (read fresh from the last tick on scrape) and of its own work.

Budget series carry the label `budget`; they exist only for budgets the control loop has decided, so a standby
replica exports none rather than zeros. Node envelope series (label `node`) exist only for nodes the last decision
gave an envelope to, which their agents re-share every 100 ms. Counters are pre-initialised for every label value
they can take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wattwise.crd.common import LatencyTier
from wattwise.operator.controller import Controller

REPORT_OUTCOMES = (
    "ok",
    "unauthenticated",
    "forbidden",
    "malformed",
    "unsupported_version",
    "unknown_node",
    "out_of_order",
    "not_ready",
    "standby",
)


class BudgetCollector(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        decision = c.decision
        reports = decision.budgets if decision is not None else {}

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("budget",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"wattwise_budget_{name}", doc, labels=list(labels))

        facility = gauge("facility_draw_watts", "Facility draw: (GPU draw + node base) x PUE, stale GPUs at limit.")
        gpu = gauge("gpu_draw_watts", "GPU draw of the budget's GPUs, stale ones at their limit.")
        cap = gauge("cap_watts", "The budget's cap (facility watts).")
        headroom = gauge("headroom_watts", "Cap minus facility draw (negative above the cap).")
        gpus = gauge("gpus", "GPUs in the budget.")
        limited = gauge("gpus_limited", "GPUs whose limit is below their default limit.")
        critical = gauge("critical_gpus_limited", "Critical-tier GPUs held below their ceiling.")
        stale = gauge("stale_gpus", "GPUs without a fresh reading (counted at their limit).")
        feasible = gauge("floors_feasible", "1 when every GPU's floor fits under the cap, else 0.")
        over = gauge("over_budget", "1 while the budget is over its cap (debounced, as the OverBudget condition).")
        fraction = gauge("above_cap_fraction", "Share of the status window spent above the cap.")
        tiers = gauge("tier_power_watts", "GPU draw by latency tier.", ("budget", "tier"))
        above_total = CounterMetricFamily(
            "wattwise_budget_above_cap_seconds", "Seconds spent above the cap.", labels=["budget"]
        )
        for name, r in sorted(reports.items()):
            facility.add_metric([name], r.facility_draw_w)
            gpu.add_metric([name], r.gpu_draw_w)
            cap.add_metric([name], r.cap_w)
            headroom.add_metric([name], r.headroom_w)
            gpus.add_metric([name], r.gpus)
            limited.add_metric([name], r.gpus_limited)
            critical.add_metric([name], r.critical_limited)
            stale.add_metric([name], r.stale_gpus)
            feasible.add_metric([name], 1.0 if r.feasible else 0.0)
            for tier in LatencyTier:
                tiers.add_metric([name, tier.value], r.tier_power_w.get(tier, 0.0))
            tracker = c.trackers.get(name)
            if tracker is not None:
                over.add_metric([name], 1.0 if tracker.over_budget else 0.0)
                fraction.add_metric([name], tracker.window.fraction)
                above_total.add_metric([name], tracker.window.above_total_s)
        yield from (facility, gpu, cap, headroom, gpus, limited, critical, stale, feasible, over, fraction, tiers)
        yield above_total
        yield from self._envelopes()
        ticks = CounterMetricFamily("wattwise_operator_ticks", "Control-loop ticks run by this replica.")
        ticks.add_metric([], c.ticks)
        yield ticks

    def _envelopes(self) -> Iterator[Metric]:
        decision = self.controller.decision
        envelopes = decision.envelopes if decision is not None else {}
        watts = GaugeMetricFamily(
            "wattwise_node_envelope_watts",
            "GPU watts of the node's envelope: what the plan counted it at, re-shared by its agent every 100 ms.",
            labels=["node"],
        )
        gpus = GaugeMetricFamily(
            "wattwise_node_envelope_gpus",
            "GPUs in the node's envelope: protected (never limited by the agent) or flexible (share what is left).",
            labels=["node", "role"],
        )
        for node, e in sorted(envelopes.items()):
            watts.add_metric([node], e.watts)
            gpus.add_metric([node, "protected"], len(e.protected))
            gpus.add_metric([node, "flexible"], len(e.flexible))
        yield from (watts, gpus)


class LeadershipCollector(Collector):
    def __init__(self, leading: Callable[[], bool]) -> None:
        self.leading = leading

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("wattwise_operator_active", "1 on the active replica, 0 on a standby (kopf peering).")
        g.add_metric([], 1.0 if self.leading() else 0.0)
        yield g


class OperatorMetrics:
    def __init__(
        self, registry: CollectorRegistry, controller: Controller, leading: Callable[[], bool] = lambda: True
    ) -> None:
        self.registry = registry
        registry.register(BudgetCollector(controller))
        registry.register(LeadershipCollector(leading))
        self.reports = Counter(
            "wattwise_operator_reports",
            "Agent reports received, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in REPORT_OUTCOMES:
            self.reports.labels(outcome)
        self.tick_seconds = Histogram(
            "wattwise_operator_tick_seconds",
            "Duration of one control tick (inputs, policy, replies, live state).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.status_writes = Counter(
            "wattwise_operator_status_writes", "Status patches, by result.", ["result"], registry=registry
        )
        self.events = Counter(
            "wattwise_operator_events", "Kubernetes Events posted, by reason.", ["reason"], registry=registry
        )
        for result in ("ok", "failed"):
            self.status_writes.labels(result)
        self.token_reviews = Counter(
            "wattwise_operator_token_reviews", "TokenReviews sent to the API server (cache misses).", registry=registry
        )
