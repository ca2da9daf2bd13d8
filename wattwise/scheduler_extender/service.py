"""One extender call from raw bytes to a protocol answer: parse, decide, reserve, count. No HTTP, no I/O.

The guarantee kube-scheduler relies on lives here: a malformed request raises `BadRequest` (a 4xx with the
reason), and anything else, including a bug in placement, degrades to "every node passes with the neutral
score" with the fault logged and counted. The scheduler is never handed an `Error` or a 5xx that would leave
a pod unschedulable because of Wattwise.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from wattwise.scheduler_extender import protocol
from wattwise.scheduler_extender.metrics import ExtenderMetrics
from wattwise.scheduler_extender.placement import Decision, Outcome, PlacementConfig, decide
from wattwise.scheduler_extender.pod_power import PodDemand, pod_demand
from wattwise.scheduler_extender.protocol import BadRequest, ExtenderArgs
from wattwise.scheduler_extender.reservations import ReservationBook
from wattwise.scheduler_extender.scoring import NEUTRAL_SCORE
from wattwise.scheduler_extender.snapshot import Snapshot
from wattwise.scheduler_extender.state_cache import StateCache

log = logging.getLogger(__name__)

Verb = Literal["filter", "prioritize"]


@dataclasses.dataclass
class ExtenderService:
    cache: StateCache
    book: ReservationBook
    metrics: ExtenderMetrics
    config: PlacementConfig
    clock: Callable[[], float] = time.monotonic
    _last_degraded: str = ""

    def handle(self, verb: Verb, raw: bytes) -> Any:
        """The JSON-ready answer to a filter or prioritize body; raises BadRequest for malformed input."""
        args = protocol.parse_extender_args(protocol.parse_body(raw))
        snapshot = self.cache.snapshot  # read once: the refresher may swap it meanwhile
        demand = pod_demand(args.pod, snapshot.state.classes if snapshot else {}, self.config.default_tier)
        try:
            decision = self._decide(verb, args, demand, snapshot)
        except Exception:  # a bug must not strand pods: pass everything, say so loudly
            log.exception("%s for pod %s failed; answering pass-through", verb, demand.key)
            self.metrics.internal_errors.labels(verb).inc()
            decision = Decision(
                passed=list(args.node_names),
                scores=dict.fromkeys(args.node_names, NEUTRAL_SCORE),
                degraded="internal error",
            )
        if verb == "filter":
            return protocol.filter_result(args, decision.passed, {}, decision.rejected)
        return protocol.host_priority_list(decision.scores)

    def _decide(self, verb: Verb, args: ExtenderArgs, demand: PodDemand, snapshot: Snapshot | None) -> Decision:
        now = self.clock()
        self.book.release(set(), now)  # expire on the request path too: a stalled refresher must not pin claims
        decision = decide(
            demand,
            args.node_names,
            scheduler_name=args.pod.spec.scheduler_name,
            snapshot=snapshot,
            reserved=self.book.totals(exclude=demand.key),
            labels=args.node_labels,
            now=now,
            config=self.config,
        )
        judged = not (decision.outcomes.keys() <= {Outcome.PASS_NOT_OURS})
        if judged and not decision.degraded:
            # Filter claims every passing node; prioritize narrows to what the scheduler still considers.
            self.book.hold(demand.key, decision.passed, decision.claim, now)
            self.metrics.reservations.set(len(self.book))
        self._report(verb, demand, decision, judged)
        return decision

    def _report(self, verb: Verb, demand: PodDemand, decision: Decision, judged: bool) -> None:
        self.metrics.record(verb, demand.tier, decision.outcomes)
        if not judged:  # other schedulers' pods and GPU-less pods say nothing about the power data
            return
        if decision.degraded:
            self.metrics.degraded.labels(verb).inc()
            if not self._last_degraded:  # log the transition, not every call of an outage
                log.warning("placing without power data: %s", decision.degraded)
        elif self._last_degraded:
            log.info("live state fresh again: filtering on power")
        self._last_degraded = decision.degraded
        if demand.note:
            log.info("pod %s: %s", demand.key, demand.note)
        if verb == "filter" and decision.rejected and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "pod %s (%s, %d GPU): %d of %d nodes rejected, e.g. %s",
                demand.key,
                demand.tier.value,
                demand.gpus,
                len(decision.rejected),
                len(decision.rejected) + len(decision.passed),
                next(iter(decision.rejected.values())),
            )


__all__ = ["BadRequest", "ExtenderService", "Verb"]
