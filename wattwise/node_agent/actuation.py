"""From the operator's reply (or the fail-safe) to NVML calls: which limit each GPU should have, and setting it.

`desired_limit` is pure: given a GPU's reading, the agent's mode, the reply and the limits this agent owns, it
returns the limit to hold (or None: leave the GPU alone). `Actuator` turns that into as few NVML writes as
possible: a limit is written only when the target changes (or, at most every `retry_s`, when the GPU does not
hold it: another tool changed it, or the last write failed), always clamped to the GPU's constraints, and read
back; a read-back that differs is reported as a mismatch.

Ownership: Wattwise only owns a GPU's limit while it enforces one. When enforcement ends (the budget goes to
Monitor, the pod's GPU leaves every budget, or the agent exits) the limit goes back to the GPU's default, and
clocks the agent locked are unlocked. A limit the agent never set is never touched.

Two loops write through one `Actuator`: the 1 Hz tick (`apply`, the reply's per-GPU limits) and the envelope loop
(`set_limit`, every 100 ms, for the GPUs a node envelope steers, which `apply` then skips). Limits either loop sets
are owned, counted and restored alike; `lock` serialises them (held for NVML writes only, never for a read).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Collection

from wattwise.node_agent.backend import GpuBackend, GpuReading
from wattwise.node_agent.nvml import ActuationFailed, GpuLost
from wattwise.telemetry.messages import Actuation, ClockRange, FailSafePolicy, GpuDirective
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode, GpuStatus

log = logging.getLogger(__name__)

#: Limits closer than this are the same limit (NVML works in mW; firmware may round to a few hundred mW).
TOLERANCE_W = 1.0
#: Outcomes of a write that did not set the limit.
FAILED = frozenset(
    {
        ActuationResult.NO_PERMISSION,
        ActuationResult.NOT_SUPPORTED,
        ActuationResult.INVALID_ARGUMENT,
        ActuationResult.ERROR,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """The limit a GPU should hold: `requested` as asked, `watts` after clamping to the GPU's constraints."""

    requested: float
    watts: float
    restore: bool = False  #: going back to the default: the agent gives up ownership once it holds


def clamp(watts: float, reading: GpuReading) -> float:
    lo = reading.min_limit_w if reading.min_limit_w is not None else watts
    hi = reading.max_limit_w if reading.max_limit_w is not None else watts
    return min(max(watts, lo), hi)


def desired_limit(
    reading: GpuReading,
    mode: AgentMode,
    directive: GpuDirective | None,
    fail_safe: FailSafePolicy | None,
    owned_w: float | None,
) -> Target | None:
    """The limit this GPU should hold now, or None to leave it as it is. See the module docstring."""
    default = reading.default_limit_w
    restore = Target(default, clamp(default, reading), restore=True) if default is not None else None
    if mode is AgentMode.STANDALONE:
        return None
    if mode is AgentMode.CONNECTED:
        if directive is not None and directive.enforced:
            requested = directive.power_limit_watts if directive.power_limit_watts is not None else default
            if requested is None:
                return None  # default unknown (not supported): nothing sensible to set
            return Target(requested, clamp(requested, reading))
        return restore if owned_w is not None else None
    if mode is AgentMode.FAIL_SAFE and fail_safe is not None:
        requested_fs = fail_safe.limit_watts.get(reading.uuid)
        if requested_fs is None and fail_safe.limit_fraction is not None and default is not None:
            requested_fs = fail_safe.limit_fraction * default
        if requested_fs is not None:
            return Target(requested_fs, clamp(requested_fs, reading))
    # grace (or a fail-safe that says nothing for this GPU): keep the last reply's limit, which is what the agent
    # holds, unless a node envelope moved it since (the envelope ends with the replies: back to the plan's limit)
    if owned_w is None:
        return None
    held = owned_w
    if directive is not None and directive.enforced and directive.power_limit_watts is not None:
        held = directive.power_limit_watts
    return Target(held, clamp(held, reading))


def desired_clocks(mode: AgentMode, directive: GpuDirective | None) -> tuple[bool, ClockRange | None]:
    """(decide?, clocks): only a connected agent changes clocks; None clocks means unlocked."""
    if mode is not AgentMode.CONNECTED:
        return False, None
    if directive is not None and directive.enforced:
        return True, directive.locked_sm_clocks
    return True, None


@dataclasses.dataclass(slots=True)
class _Written:
    watts: float
    at: float


class Actuator:
    """Applies targets through a backend with the fewest writes, and remembers what it owns."""

    def __init__(self, backend: GpuBackend, retry_s: float = 30.0) -> None:
        self.backend = backend
        self.retry_s = retry_s
        #: taken by every method that reads or changes the state below (re-entrant: `set_limit` inside a caller's
        #: critical section is fine)
        self.lock = threading.RLock()
        self.owned: dict[str, float] = {}  #: uuid -> limit this agent set and holds
        self.locked: dict[str, ClockRange] = {}  #: uuid -> clocks this agent locked
        self.last: dict[str, Actuation] = {}  #: uuid -> the last action and its outcome
        self.counts: dict[tuple[str, ActuationResult], int] = {}
        self._written: dict[str, _Written] = {}
        #: uuid -> (when, watts) the GPU enforced after this agent's last successful write: fresher than a reading
        #: taken before it (the envelope loop writes between two samples)
        self._set: dict[str, tuple[float, float]] = {}

    def apply(
        self,
        readings: list[GpuReading],
        mode: AgentMode,
        directives: dict[str, GpuDirective],
        fail_safe: FailSafePolicy | None,
        now: float,
        *,
        skip_limits: Collection[str] = (),
    ) -> None:
        """Each GPU's limit and clocks as the mode and the reply say; `skip_limits`: GPUs the envelope loop sets."""
        with self.lock:
            for reading in readings:
                if reading.status is not GpuStatus.OK:
                    continue
                directive = directives.get(reading.uuid)
                if reading.uuid not in skip_limits:
                    target = desired_limit(reading, mode, directive, fail_safe, self.owned.get(reading.uuid))
                    if target is not None:
                        self._limit(reading, target, now)
                decide, clocks = desired_clocks(mode, directive)
                if decide:
                    self._clocks(reading, clocks, now)

    def set_limit(self, reading: GpuReading, target: Target, now: float, wall_s: float) -> ActuationResult | None:
        """Write `target` now, for the envelope loop, which decided the change against `owned` (a reading may be
        a second old). A GPU whose last write failed is tried again after `retry_s`, not every 100 ms: returns
        None then, else the outcome."""
        with self.lock:
            uuid = reading.uuid
            last, written = self.last.get(uuid), self._written.get(uuid)
            if last is not None and last.result in FAILED and written is not None and now - written.at < self.retry_s:
                return None
            # up to 10 a second: not at INFO
            self._limit(reading, target, now, force=True, level=logging.DEBUG, as_of=(now, wall_s))
            return self.last[uuid].result

    def enforced_w(self, reading: GpuReading) -> float | None:
        """The limit the GPU enforces as far as this agent knows: what it wrote since `reading` was taken (read
        back), else the reading's."""
        with self.lock:
            written = self._written_since(reading.uuid, reading.monotonic_s)
            return written if written is not None else reading.enforced_limit_w

    def _written_since(self, uuid: str, monotonic_s: float) -> float | None:
        """What the GPU enforced after this agent's last write, if that write was at `monotonic_s` or later."""
        set_at = self._set.get(uuid)
        if set_at is not None and set_at[0] >= monotonic_s:  # a tie: the write came after the read
            return set_at[1]
        return None

    def holding(self, uuid: str) -> float | None:
        """The limit this agent set on the GPU and holds, if any."""
        with self.lock:
            return self.owned.get(uuid)

    def view(self) -> tuple[dict[str, Actuation], dict[str, float], dict[tuple[str, ActuationResult], int]]:
        """Copies of `last`, `owned` and `counts` for a snapshot, consistent with each other."""
        with self.lock:
            return dict(self.last), dict(self.owned), dict(self.counts)

    def restore_all(self, readings: list[GpuReading], now: float) -> None:
        """On exit: owned limits back to default, locked clocks unlocked."""
        with self.lock:
            for reading in readings:
                if reading.status is not GpuStatus.OK:
                    continue
                if reading.uuid in self.owned and reading.default_limit_w is not None:
                    default = reading.default_limit_w
                    self._limit(reading, Target(default, clamp(default, reading), restore=True), now, force=True)
                if reading.uuid in self.locked:
                    self._clocks(reading, None, now)

    # --- the writes ----------------------------------------------------------------------------------------------

    def _limit(
        self,
        reading: GpuReading,
        target: Target,
        now: float,
        force: bool = False,
        level: int = logging.INFO,
        as_of: tuple[float, float] | None = None,
    ) -> None:
        """`as_of` (monotonic, wall): decided then, from `reading`'s constraints only: its enforced limit is not
        taken as what the GPU holds now (only a write since is)."""
        uuid = reading.uuid
        if as_of is None:
            enforced, wall_s = self.enforced_w(reading), reading.wall_s
        else:
            enforced, wall_s = self._written_since(uuid, as_of[0]), as_of[1]
        holds = enforced is not None and abs(enforced - target.watts) < TOLERANCE_W
        written = self._written.get(uuid)
        same_target = written is not None and abs(written.watts - target.watts) < TOLERANCE_W
        if holds:
            if not same_target:
                self._record(uuid, wall_s, ActuationResult.UNCHANGED, target, readback=enforced)
            self._settle(uuid, target, now)
            return
        if same_target and written is not None and now - written.at < self.retry_s and not force:
            return  # wrote this already; do not hammer NVML while the GPU disagrees
        self._written[uuid] = _Written(target.watts, now)
        try:
            readback = self.backend.set_power_limit(reading.index, target.watts)
        except (ActuationFailed, GpuLost) as exc:
            result = exc.result if isinstance(exc, ActuationFailed) else ActuationResult.ERROR
            self._record(uuid, wall_s, result, target, message=str(exc))
            log.warning("GPU %d (%s): setting %.0f W failed: %s", reading.index, uuid, target.watts, exc)
            self._set.pop(uuid, None)  # what the GPU holds now is unknown: the next reading says
            return
        self._set[uuid] = (now, readback if readback is not None else target.watts)
        if readback is not None and abs(readback - target.watts) >= TOLERANCE_W:
            self._record(
                uuid,
                wall_s,
                ActuationResult.MISMATCH,
                target,
                readback=readback,
                message=f"set {target.watts:.1f} W, GPU enforces {readback:.1f} W",
            )
            log.warning("GPU %d (%s): set %.1f W, reads back %.1f W", reading.index, uuid, target.watts, readback)
        else:
            self._record(uuid, wall_s, ActuationResult.APPLIED, target, readback=readback)
            log.log(
                level,
                "GPU %d (%s): power limit %.1f W (asked %.1f W)",
                reading.index,
                uuid,
                target.watts,
                target.requested,
            )
        self._settle(uuid, target, now)

    def _settle(self, uuid: str, target: Target, now: float) -> None:
        self._written[uuid] = _Written(target.watts, self._written[uuid].at if uuid in self._written else now)
        if target.restore:
            self.owned.pop(uuid, None)
        else:
            self.owned[uuid] = target.watts

    def _clocks(self, reading: GpuReading, clocks: ClockRange | None, now: float) -> None:
        uuid = reading.uuid
        current = self.locked.get(uuid)
        if clocks == current:
            return
        try:
            if clocks is None:
                self.backend.reset_locked_clocks(reading.index)
                self.locked.pop(uuid, None)
            else:
                self.backend.set_locked_clocks(reading.index, clocks.min_mhz, clocks.max_mhz)
                self.locked[uuid] = clocks
        except (ActuationFailed, GpuLost) as exc:
            result = exc.result if isinstance(exc, ActuationFailed) else ActuationResult.ERROR
            self._count("locked_clocks", result)
            log.warning("GPU %d (%s): locking clocks %s failed: %s", reading.index, uuid, clocks, exc)
            if clocks is None:
                self.locked.pop(uuid, None)  # nothing more we can do; do not retry every second
            else:
                self.locked[uuid] = clocks  # remembered as attempted; retried when the request changes
            return
        last = self.last.get(uuid)
        if last is not None:
            self.last[uuid] = dataclasses.replace(last, locked_sm_clocks=self.locked.get(uuid))

    def _record(
        self,
        uuid: str,
        wall_s: float,
        result: ActuationResult,
        target: Target,
        *,
        readback: float | None = None,
        message: str | None = None,
    ) -> None:
        self._count("power_limit", result)
        self.last[uuid] = Actuation(
            result=result,
            target_watts=target.watts,
            requested_watts=max(0.0, target.requested),
            readback_watts=readback,
            locked_sm_clocks=self.locked.get(uuid),
            message=message,
            at=dt.datetime.fromtimestamp(wall_s, dt.UTC),
        )

    def _count(self, action: str, result: ActuationResult) -> None:
        key = (action, result)
        self.counts[key] = self.counts.get(key, 0) + 1
