"""Prometheus metrics of the extender, on a registry owned by one app instance (tests stay isolated)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wattwise.crd.common import LatencyTier
from wattwise.scheduler_extender.placement import Outcome

VERBS = ("filter", "prioritize")
#: Extender calls are sub-millisecond to tens of milliseconds; the scheduler's own timeout is seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ExtenderMetrics:
    def __init__(self, registry: CollectorRegistry, state_age: Callable[[], float]) -> None:
        self.registry = registry
        self.decisions = Counter(
            "wattwise_extender_decisions_total",
            "Per-node decisions, by verb, the pod's latency tier and the outcome.",
            ["verb", "tier", "outcome"],
            registry=registry,
        )
        self.requests = Counter(
            "wattwise_extender_requests_total",
            "Extender HTTP calls by verb and status code class.",
            ["verb", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "wattwise_extender_request_duration_seconds",
            "Time to answer a filter or prioritize call, parsing included.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.degraded = Counter(
            "wattwise_extender_degraded_decisions_total",
            "Calls answered without fresh power data (every node passed, neutral scores), by verb.",
            ["verb"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "wattwise_extender_internal_errors_total",
            "Calls that hit a bug and were answered with pass-through instead of a 500, by verb.",
            ["verb"],
            registry=registry,
        )
        self.refreshes = Counter(
            "wattwise_extender_state_refreshes_total",
            "Attempts to fetch the operator's live state, by result.",
            ["result"],
            registry=registry,
        )
        self.state_age = Gauge(
            "wattwise_extender_state_age_seconds",
            "Seconds since the live state in use was fetched (+Inf before the first fetch).",
            registry=registry,
        )
        self.state_age.set_function(state_age)
        self.reservations = Gauge(
            "wattwise_extender_reservations",
            "Pods currently holding watts they were just placed with, not yet seen in the telemetry.",
            registry=registry,
        )
        for verb in VERBS:
            self.degraded.labels(verb)
            self.internal_errors.labels(verb)
            self.latency.labels(verb)
            for code in ("2xx", "4xx"):
                self.requests.labels(verb, code)
            for tier in LatencyTier:
                for outcome in Outcome:
                    self.decisions.labels(verb, tier.value, outcome.value)
        for result in ("ok", "error", "invalid"):
            self.refreshes.labels(result)

    def record(self, verb: str, tier: LatencyTier, outcomes: Tally[Outcome]) -> None:
        for outcome, n in outcomes.items():
            self.decisions.labels(verb, tier.value, outcome.value).inc(n)
