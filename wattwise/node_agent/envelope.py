"""The agent's fast loop: between two operator replies, re-share the node envelope every 100 ms.

The operator decides once a second, so a critical burst that starts just after a decision would push the site over
its cap until the next one. With its reply the operator may send a node envelope (`wattwise.policy.envelope`): the
GPU watts its plan counted this node at. Every fast tick this loop reads the power of this instant of the GPUs the
envelope protects (critical and standard work, never limited here: they keep the reply's per-GPU limits), hands
what they leave to its flexible (tolerant) GPUs with `share`, and sets their limits: a burst takes its watts from
the tolerant GPUs on the same node within one tick, and gives them back as soon as it ends.

- An envelope steers only GPUs its reply enforces. A flexible GPU the reply does not enforce, or whose last
  reading failed, is not steered; it is counted like a protected one, at what it draws.
- A counted GPU whose power cannot be read counts at its limit (as of its last good sample, or what this agent
  set since), or its maximum when unknown: missing data never looks like headroom. A GPU with no known limit
  either (never seen on this node) makes the envelope unusable.
- An envelope is valid `valid_for_seconds` after its reply and never into the fail-safe. Without a valid one the
  reply's per-GPU limits apply: the 1 Hz tick sets them, and GPUs this loop lets go get them at once.
- Writes: lower at once, raise only by more than `RAISE_DEADBAND_W` (a cap that wobbles by a few watts is the
  same cap, not an NVML write 10 times a second), through the agent's `Actuator`, so envelope limits are owned,
  counted, read back and restored on exit like every limit the agent sets.
- `CapTracker` sees every steered GPU each tick; its verdict per GPU goes in the next report (`capped`).

Thread-safety: the 1 Hz tick hands in readings and envelopes by swapping immutable references; decisions and
writes happen under the Actuator's lock, which no NVML read is made under. `status` is an immutable snapshot for
/metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from wattwise.node_agent.actuation import TOLERANCE_W, Actuator, Target, clamp
from wattwise.node_agent.backend import GpuBackend, GpuReading
from wattwise.policy.envelope import CapTracker, FlexibleGpu, NodeEnvelope, share
from wattwise.telemetry.messages import GpuDirective
from wattwise.telemetry.vocabulary import ActuationResult, GpuStatus

log = logging.getLogger(__name__)

#: A flexible GPU's limit rises only when its new cap is this much above the limit it holds.
RAISE_DEADBAND_W = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """An envelope as this agent may use it: from one reply, until `valid_until` (monotonic seconds)."""

    #: the reply's envelope, its flexible GPUs cut down to those the reply enforces
    envelope: NodeEnvelope
    #: GPUs whose draw comes off the envelope: its protected GPUs and the flexible ones the reply does not enforce
    counted: tuple[str, ...]
    valid_until: float


def grant(envelope: NodeEnvelope, directives: Mapping[str, GpuDirective], valid_until: float) -> Grant:
    """Restrict `envelope` to the GPUs the reply enforces (pure)."""
    steered = tuple(f for f in envelope.flexible if _enforced(directives.get(f.uuid)))
    others = tuple(f.uuid for f in envelope.flexible if f not in steered)
    return Grant(dataclasses.replace(envelope, flexible=steered), (*envelope.protected, *others), valid_until)


def _enforced(directive: GpuDirective | None) -> bool:
    return directive is not None and directive.enforced


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What the fast ticks take from one grant and one sample, made again when either changes (about once a second,
    not 10 times)."""

    grant: Grant
    readings: Mapping[str, GpuReading]
    #: the grant's flexible GPUs this agent can set now (seen at the last sample, and answering), with their readings
    flexible: tuple[tuple[FlexibleGpu, GpuReading], ...]
    steered: frozenset[str]
    #: every GPU whose draw comes off the envelope, with its reading (None: not in the sample)
    counted: tuple[tuple[str, GpuReading | None], ...]
    #: the grant's envelope with `flexible` only, as `share` takes it
    envelope: NodeEnvelope


def _plan(current: Grant, readings: Mapping[str, GpuReading]) -> _Plan:
    """Which GPUs a tick steers and which it counts (pure): a flexible GPU it cannot set is counted at its draw."""
    flexible = []
    for f in current.envelope.flexible:
        reading = readings.get(f.uuid)
        if reading is not None and reading.status is GpuStatus.OK:
            flexible.append((f, reading))
    steered = frozenset(f.uuid for f, _ in flexible)
    counted = (*current.counted, *(f.uuid for f in current.envelope.flexible if f.uuid not in steered))
    envelope = current.envelope
    if len(flexible) < len(envelope.flexible):
        envelope = dataclasses.replace(envelope, flexible=tuple(f for f, _ in flexible))
    return _Plan(current, readings, tuple(flexible), steered, tuple((u, readings.get(u)) for u in counted), envelope)


@dataclasses.dataclass(frozen=True, slots=True)
class EnvelopeStatus:
    """What the envelope loop did at its last tick, for /metrics and the health check."""

    enabled: bool = False
    active: bool = False
    #: why it is not active: disabled, none (the last reply had none), expired, nothingToSteer, unknownDraw
    reason: str = "none"
    watts: float | None = None
    protected_draw_w: float | None = None
    #: the cap the envelope gives each steered GPU this tick (clamped to the GPU's constraints)
    caps_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    adjustments: int = 0
    ticks: int = 0
    tick_errors: int = 0
    tick_duration_s: float | None = None
    last_tick_monotonic_s: float | None = None


class EnvelopeLoop:
    """Steers the flexible GPUs of the current envelope; see the module docstring."""

    def __init__(
        self,
        backend: GpuBackend,
        actuator: Actuator,
        *,
        interval_s: float,
        release: Callable[[list[GpuReading], float], None],
        clock: Any = time,
    ) -> None:
        self.backend = backend
        self.actuator = actuator
        self.interval_s = interval_s
        self.enabled = interval_s > 0
        self.clock = clock
        #: gives GPUs this loop stops steering back to the per-GPU limits (called under the Actuator's lock)
        self._release = release
        self._grant: Grant | None = None
        self._readings: Mapping[str, GpuReading] = {}
        #: each GPU's last good reading: a GPU lost since still counts at the limit it had
        self._last_ok: dict[str, GpuReading] = {}
        self._steering: frozenset[str] = frozenset()
        self._plan: _Plan | None = None
        self._caps = CapTracker()
        self._caps_lock = threading.Lock()
        #: held while `run` may sleep on it; `wake` releases it
        self._sleep = threading.Lock()
        self._sleep.acquire()
        self._adjustments = 0
        self._ticks = 0
        self._errors = 0
        self.status = EnvelopeStatus(enabled=self.enabled, reason="none" if self.enabled else "disabled")

    # --- from the 1 Hz tick -----------------------------------------------------------------------------------

    def observe(self, readings: Collection[GpuReading]) -> None:
        """The latest sample: where each GPU is (index), its constraints and the limit it enforces."""
        self._readings = {r.uuid: r for r in readings}
        self._last_ok.update((r.uuid, r) for r in readings if r.status is GpuStatus.OK)

    def offer(self, envelope: NodeEnvelope | None, directives: Mapping[str, GpuDirective], valid_until: float) -> None:
        """A reply came: its envelope (None: it had none) replaces the previous one."""
        if not self.enabled:
            return
        self._grant = grant(envelope, directives, valid_until) if envelope is not None else None

    def steering(self, now: float) -> frozenset[str]:
        """The GPUs whose limits this loop sets at `now`: the 1 Hz tick leaves their limits alone."""
        current = self._grant
        if current is None or now >= current.valid_until:
            return frozenset()
        return self._plan_for(current, self._readings).steered

    def take_capped(self) -> Mapping[str, bool]:
        """Per steered GPU, whether the envelope held it at its cap since the last report (empty: none steered)."""
        with self._caps_lock:
            return self._caps.take()

    # --- the fast tick ------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick every interval until `stop` is set; on a fixed schedule, never bursting to catch up.

        Sleeps on a lock that `wake` releases, not on `stop`: an Event's wait (a Condition's: a new lock, a waiter
        list) costs the thread about 40 us more CPU per wake-up, 10 times a second. Whoever sets `stop` calls `wake`
        (else the loop sees it within one interval)."""
        next_at = self.clock.monotonic()
        while not stop.is_set():
            self.tick_safely()
            next_at += self.interval_s
            now = self.clock.monotonic()
            if next_at < now:
                next_at = now + self.interval_s
            self._sleep.acquire(timeout=max(0.0, next_at - now))

    def wake(self) -> None:
        """Cut `run`'s sleep short, for good: call it after setting `stop`."""
        with contextlib.suppress(RuntimeError):  # released already
            self._sleep.release()

    def tick_safely(self) -> None:
        try:
            self.tick()
        except Exception:
            self._errors += 1
            if self._errors == 1 or self._errors % 600 == 0:  # once, then once a minute at 10 Hz
                log.exception("envelope tick failed (%d so far); carrying on", self._errors)
            self.status = dataclasses.replace(self.status, tick_errors=self._errors)

    def tick(self) -> None:
        began = self.clock.monotonic()
        if not self.enabled:
            return
        current, readings = self._grant, self._readings
        if current is None or began >= current.valid_until:
            self._let_go(began, "none" if current is None else "expired")
            return
        plan = self._plan_for(current, readings)
        if not plan.flexible:
            self._let_go(began, "nothingToSteer")
            return
        draw = 0.0
        for uuid, reading in plan.counted:
            watts = self._power(reading)
            if watts is None:
                watts = self._counted_limit(uuid)
            if watts is None:
                self._let_go(began, "unknownDraw")
                return
            draw += watts
        power = [self._power(reading) for _, reading in plan.flexible]
        caps = share(plan.envelope, draw)

        clamped: dict[str, float] = {}
        held: dict[str, float] = {}
        with self.actuator.lock:
            if self._grant is not current:
                return  # a newer reply came in while this tick read power: the next tick uses it
            now, wall = self.clock.monotonic(), self.clock.time()
            owned = self.actuator.owned
            for f, reading in plan.flexible:
                uuid = f.uuid
                cap = clamped[uuid] = clamp(caps[uuid], reading)
                holds = owned.get(uuid, reading.enforced_limit_w)
                if holds is None or cap < holds - TOLERANCE_W or cap > holds + RAISE_DEADBAND_W:
                    result = self.actuator.set_limit(reading, Target(caps[uuid], cap), now, wall)
                    if result is ActuationResult.APPLIED or result is ActuationResult.MISMATCH:
                        self._adjustments += 1
                held[uuid] = owned.get(uuid, cap if holds is None else holds)
            if self._steering is not plan.steered:
                self._hand_back(self._steering - plan.steered, now)
                self._steering = plan.steered
        with self._caps_lock:
            self._caps.observe(
                [(f.uuid, w, held[f.uuid]) for (f, _), w in zip(plan.flexible, power, strict=True) if w is not None]
            )
        self._publish(
            began,
            active=True,
            reason="",
            watts=current.envelope.watts,
            protected_draw_w=draw,
            caps_w=clamped,
        )

    # --- helpers ----------------------------------------------------------------------------------------------

    def _plan_for(self, current: Grant, readings: Mapping[str, GpuReading]) -> _Plan:
        """The plan of `current` over `readings`, kept while both are the same objects (either thread may make it;
        it is immutable, so a race makes it twice, never wrong)."""
        plan = self._plan
        if plan is None or plan.grant is not current or plan.readings is not readings:
            plan = self._plan = _plan(current, readings)
        return plan

    def _power(self, reading: GpuReading | None) -> float | None:
        if reading is None or reading.status is not GpuStatus.OK:
            return None
        return self.backend.instant_power_w(reading.index)

    def _counted_limit(self, uuid: str) -> float | None:
        """What a GPU whose power cannot be read counts at: its limit, or its maximum when that is unknown."""
        reading = self._last_ok.get(uuid)
        if reading is None:
            return None
        limit = self.actuator.enforced_w(reading)
        return limit if limit is not None else reading.max_limit_w

    def _let_go(self, began: float, reason: str) -> None:
        """No usable envelope: the GPUs this loop steered go back to the per-GPU limits now."""
        if self._steering:
            with self.actuator.lock:
                self._hand_back(self._steering, self.clock.monotonic())
                self._steering = frozenset()
        self._publish(began, active=False, reason=reason, watts=None, protected_draw_w=None, caps_w={})

    def _hand_back(self, uuids: Collection[str], now: float) -> None:
        readings = [self._readings[u] for u in sorted(uuids) if u in self._readings]
        if readings:
            self._release(readings, now)

    def _publish(
        self,
        began: float,
        *,
        active: bool,
        reason: str,
        watts: float | None,
        protected_draw_w: float | None,
        caps_w: Mapping[str, float],
    ) -> None:
        previous = self.status
        if active != previous.active or (not active and reason != previous.reason and previous.ticks > 0):
            if active:
                log.info("node envelope: steering %d GPU(s) inside %.0f W", len(caps_w), watts or 0.0)
            else:
                log.info("node envelope not in use (%s): the per-GPU limits apply", reason)
        self._ticks += 1
        end = self.clock.monotonic()
        self.status = EnvelopeStatus(
            enabled=True,
            active=active,
            reason=reason,
            watts=watts,
            protected_draw_w=protected_draw_w,
            caps_w=caps_w,
            adjustments=self._adjustments,
            ticks=self._ticks,
            tick_errors=self._errors,
            tick_duration_s=end - began,
            last_tick_monotonic_s=end,
        )
