"""The placement rules (pure): which nodes a GPU pod may use, and how much each is preferred.

For every budget a node sits in (all must hold at once), with `reserved` the extender's own claims for pods it
has just let through (see `reservations`):

- critical and standard: the pod's expected facility power (GPUs x expected W per GPU x PUE) must fit in the
  budget's guaranteed headroom minus reserved watts. Critical pods also need every GPU on the node below the
  thermal threshold.
- tolerant: the budget must be feasible (its floors fit) and the pod's nameplate facility power must stay
  within the oversubscription bound (`cap x maxOversubscription`) after what is allocated and reserved.

Rejections go to `FailedAndUnresolvableNodes`: kube-scheduler's preemption only reasons about resources its
own plugins know, so evicting pods on a node would not make it pass, and preemption must not be attempted.

What is not known is not held against a node: a node missing from the live state, in no budget, or in a budget
the operator marks stale passes with the neutral score; a live state older than `stale_after_s` (or none yet)
turns the whole decision into pass-through. Each such case is counted under its own outcome so it is visible.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from collections.abc import Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.scheduler_extender import scoring
from wattwise.scheduler_extender.pod_power import (
    FALLBACK_NAMEPLATE_W,
    GPU_PRODUCT_LABEL,
    PodDemand,
    nameplate_for_product,
)
from wattwise.scheduler_extender.reservations import BudgetClaim
from wattwise.scheduler_extender.snapshot import NodeFacts, Snapshot


class Outcome(enum.StrEnum):
    """Per-node decision, the `outcome` label of `wattwise_extender_decisions_total`."""

    PASS = "pass"
    PASS_DEGRADED = "pass_degraded"
    PASS_UNKNOWN_NODE = "pass_unknown_node"
    PASS_UNMANAGED = "pass_unmanaged"
    PASS_NOT_OURS = "pass_not_ours"
    REJECT_HEADROOM = "reject_headroom"
    REJECT_THERMAL = "reject_thermal"
    REJECT_OVERSUBSCRIPTION = "reject_oversubscription"
    REJECT_INFEASIBLE = "reject_infeasible"

    @property
    def rejects(self) -> bool:
        return self in _REJECTS


_REJECTS = frozenset(o for o in Outcome if o.value.startswith("reject_"))


@dataclasses.dataclass(frozen=True, slots=True)
class PlacementConfig:
    stale_after_s: float = 5.0
    thermal_threshold_c: float = 83.0
    default_tier: LatencyTier = LatencyTier.STANDARD
    #: Pods of other schedulers pass through untouched (extenders are shared by every profile). Empty = all.
    scheduler_names: frozenset[str] = frozenset({"wattwise-scheduler"})


@dataclasses.dataclass(slots=True)
class Decision:
    """The outcome of one filter or prioritize call."""

    passed: list[str] = dataclasses.field(default_factory=list)
    rejected: dict[str, str] = dataclasses.field(default_factory=dict)
    scores: dict[str, int] = dataclasses.field(default_factory=dict)
    outcomes: Counter[Outcome] = dataclasses.field(default_factory=Counter)
    #: What the pod should hold per budget if it lands on any passed node (empty: hold nothing).
    claim: dict[str, BudgetClaim] = dataclasses.field(default_factory=dict)
    #: Set when the whole decision was made without (fresh) power data, and why.
    degraded: str = ""


def degraded_reason(snapshot: Snapshot | None, now: float, config: PlacementConfig) -> str:
    if snapshot is None:
        return "no live state from the operator yet: not filtering on power"
    age = snapshot.age_s(now)
    if age > config.stale_after_s:
        return f"live state is {age:.0f}s old (stale after {config.stale_after_s:g}s): not filtering on power"
    return ""


def _pass_through(nodes: Sequence[str], outcome: Outcome, reason: str = "") -> Decision:
    return Decision(
        passed=list(nodes),
        scores=dict.fromkeys(nodes, scoring.NEUTRAL_SCORE),
        outcomes=Counter({outcome: len(nodes)}),
        degraded=reason,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Verdict:
    """What a node's budgets say about the pod, shared by every node with the same budgets and GPU model."""

    outcome: Outcome
    reason: str
    h: float | None = None
    needs: Mapping[str, BudgetClaim] = dataclasses.field(default_factory=dict)

    @property
    def result(self) -> _Result:
        """What `evaluate` returns for a node this verdict settles (temperature aside)."""
        if self.outcome in _REJECTS:
            return self.outcome, self.reason, None, None, self
        return self.outcome, "", self.h, None, self


#: (outcome, reason if rejected, headroom fraction h, thermal fraction t, the budget verdict used)
_Result = tuple[Outcome, str, float | None, float | None, "_Verdict | None"]
_UNKNOWN: _Result = (Outcome.PASS_UNKNOWN_NODE, "", None, None, None)
_UNMANAGED: _Result = (Outcome.PASS_UNMANAGED, "", None, None, None)


class _Evaluator:
    """Per-request state: budget availability and reason strings computed once, shared by every node."""

    def __init__(
        self,
        demand: PodDemand,
        snapshot: Snapshot,
        reserved: Mapping[str, BudgetClaim],
        labels: Mapping[str, Mapping[str, str]],
        config: PlacementConfig,
    ) -> None:
        self.demand, self.snapshot, self.reserved, self.labels, self.config = (
            demand,
            snapshot,
            reserved,
            labels,
            config,
        )
        self._critical = demand.tier is LatencyTier.CRITICAL
        self._avail: dict[str, tuple[float, float]] = {}
        self._verdicts: dict[tuple[tuple[str, ...], float], tuple[_Verdict, _Result]] = {}
        self._thermal: dict[tuple[float, float], tuple[bool, float | None]] = {}
        self._reasons: dict[tuple[object, ...], str] = {}

    def available(self, budget: str) -> tuple[float, float]:
        """(guaranteed headroom left, room under the oversubscription bound), reservations deducted."""
        got = self._avail.get(budget)
        if got is None:
            b = self.snapshot.budgets[budget]
            r = self.reserved.get(budget, BudgetClaim(0.0, 0.0))
            got = (
                b.guaranteed_headroom_w - r.guaranteed_w,
                b.oversubscription_bound_w - b.nameplate_w - r.nameplate_w,
            )
            self._avail[budget] = got
        return got

    def nameplate(self, node: str, facts: NodeFacts) -> float:
        if facts.nameplate_w:
            return facts.nameplate_w
        product = self.labels.get(node, {}).get(GPU_PRODUCT_LABEL)
        return nameplate_for_product(product) or FALLBACK_NAMEPLATE_W

    def evaluate(self, node: str) -> _Result:
        """One node's result. Hot path: everything that nodes share is computed once per request."""
        facts = self.snapshot.nodes.get(node)
        if facts is None:
            return _UNKNOWN
        if not facts.budgets:
            return _UNMANAGED
        # Nodes of one rack share budgets and GPU model: judge the budgets once per such group.
        key = facts.group or (facts.budgets, self.nameplate(node, facts))
        judged = self._verdicts.get(key)
        if judged is None:
            verdict = self._judge_budgets(*key)
            judged = self._verdicts[key] = (verdict, verdict.result)
        verdict, result = judged
        temp = facts.max_temperature_c
        if not self._critical or verdict.outcome in _REJECTS or temp is None:
            return result  # temperature only matters to critical pods (rule and score)
        threshold = facts.thermal_threshold_c or self.config.thermal_threshold_c
        hot_t = self._thermal.get((temp, threshold))
        if hot_t is None:  # NVML reports whole degrees: few distinct readings per request
            hot_t = self._thermal[(temp, threshold)] = (temp >= threshold, scoring.thermal_fraction(temp, threshold))
        if hot_t[0]:
            return Outcome.REJECT_THERMAL, self._thermal_reason(temp, threshold), None, None, verdict
        return verdict.outcome, "", verdict.h, hot_t[1], verdict

    def _judge_budgets(self, budgets: tuple[str, ...], nameplate: float) -> _Verdict:
        d = self.demand
        per_gpu = d.watts_per_gpu(nameplate)
        protected = d.tier is not LatencyTier.TOLERANT
        needs: dict[str, BudgetClaim] = {}
        h: float | None = None
        checked = False
        for name in budgets:
            b = self.snapshot.budgets[name]
            need_g = d.gpus * per_gpu * b.pue if protected else 0.0
            need_n = d.gpus * nameplate * b.pue
            needs[name] = BudgetClaim(need_g, need_n)
            if b.stale:
                continue
            checked = True
            g_avail, n_room = self.available(name)
            if protected and need_g > g_avail:
                return _Verdict(Outcome.REJECT_HEADROOM, self._headroom_reason(name, g_avail, need_g, per_gpu))
            if not protected and not b.feasible:
                return _Verdict(Outcome.REJECT_INFEASIBLE, self._infeasible_reason(name))
            if not protected and need_n > n_room:
                return _Verdict(Outcome.REJECT_OVERSUBSCRIPTION, self._oversub_reason(name, n_room, need_n))
            frac = scoring.headroom_fraction(g_avail - need_g, b.target_w)
            if frac is not None:
                h = frac if h is None else min(h, frac)
        return _Verdict(Outcome.PASS if checked else Outcome.PASS_DEGRADED, "", h, needs)

    def _cached(self, key: tuple[object, ...], text: str) -> str:
        # Identical reasons let kube-scheduler aggregate them ("3 wattwise: ...") in the pod's event.
        return self._reasons.setdefault(key, text)

    def _reserved_note(self, budget: str, field: str) -> str:
        r = self.reserved.get(budget)
        w = getattr(r, field) if r is not None else 0.0
        return f" after {w:.0f} W reserved for just-placed pods" if w > 0.5 else ""

    def _headroom_reason(self, budget: str, avail: float, need: float, per_gpu: float) -> str:
        d = self.demand
        pue = self.snapshot.budgets[budget].pue
        return self._cached(
            ("h", budget, round(avail), round(need)),
            f"wattwise: PowerBudget {budget} has {max(avail, 0.0):.0f} W guaranteed headroom"
            f"{self._reserved_note(budget, 'guaranteed_w')}; this {d.tier.value} pod needs {need:.0f} W "
            f"({d.gpus} GPU x {per_gpu:.0f} W x PUE {pue:g})",
        )

    def _infeasible_reason(self, budget: str) -> str:
        return self._cached(
            ("i", budget),
            f"wattwise: PowerBudget {budget} cannot fit its GPUs' floors under the cap; "
            "no new tolerant pods until it recovers",
        )

    def _oversub_reason(self, budget: str, room: float, need: float) -> str:
        b = self.snapshot.budgets[budget]
        return self._cached(
            ("o", budget, round(room), round(need)),
            f"wattwise: PowerBudget {budget} is at its oversubscription bound "
            f"({b.max_oversubscription:g} x cap = {b.oversubscription_bound_w:.0f} W): "
            f"{max(room, 0.0):.0f} W of nameplate room"
            f"{self._reserved_note(budget, 'nameplate_w')}, this tolerant pod needs {need:.0f} W",
        )

    def _thermal_reason(self, temp: float, threshold: float) -> str:
        return self._cached(
            ("t", round(temp), round(threshold)),
            f"wattwise: a GPU is at {temp:.0f} C, at or above the {threshold:.0f} C thermal threshold "
            "for critical pods",
        )


def _merge_need(claim: dict[str, BudgetClaim], needs: Mapping[str, BudgetClaim]) -> None:
    for name, n in needs.items():
        c = claim.get(name)
        claim[name] = (
            n if c is None else BudgetClaim(max(c.guaranteed_w, n.guaranteed_w), max(c.nameplate_w, n.nameplate_w))
        )


def decide(
    demand: PodDemand,
    nodes: Sequence[str],
    *,
    scheduler_name: str | None,
    snapshot: Snapshot | None,
    reserved: Mapping[str, BudgetClaim],
    labels: Mapping[str, Mapping[str, str]],
    now: float,
    config: PlacementConfig,
) -> Decision:
    """Evaluate every node once: the pass/reject split for filter and the scores for prioritize together."""
    if demand.gpus == 0 or (
        config.scheduler_names and (scheduler_name or "default-scheduler") not in config.scheduler_names
    ):
        return _pass_through(nodes, Outcome.PASS_NOT_OURS)
    why = degraded_reason(snapshot, now, config)
    if snapshot is None or why:
        return _pass_through(nodes, Outcome.PASS_DEGRADED, why)
    ev = _Evaluator(demand, snapshot, reserved, labels, config)
    out = Decision()
    claimed: set[int] = set()
    tally: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
    memo: dict[tuple[float | None, float | None], int] = {}
    evaluate, rejected, passed, scores, tier = ev.evaluate, out.rejected, out.passed, out.scores, demand.tier
    for node in nodes:
        outcome, reason, h, t, verdict = evaluate(node)
        tally[outcome] += 1
        if outcome in _REJECTS:
            rejected[node] = reason
            scores[node] = 0
            continue
        passed.append(node)
        score = memo.get((h, t))
        if score is None:
            score = memo[(h, t)] = scoring.score(tier, h, t)
        scores[node] = score
        if verdict is not None and id(verdict) not in claimed:
            claimed.add(id(verdict))
            _merge_need(out.claim, verdict.needs)
    out.outcomes.update({k: v for k, v in tally.items() if v})
    return out
