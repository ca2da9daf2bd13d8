"""The agent's standing with the operator: connected, grace, fail-safe; when to try again. Pure: time is passed in.

- Every answered report makes the link `connected` and resets the back-off.
- A failed report starts (or continues) `grace`: the last limits stay. The grace period counts from the last
  answered report (from the agent's start when there never was one), so a flapping operator cannot extend it.
- Once the grace period is over the link is `failSafe` until a report is answered again.
- Failed reports are retried with exponential back-off and "equal jitter" (half fixed, half random), capped,
  so a fleet of agents does not hammer a recovering operator in lock-step.
"""

from __future__ import annotations

import dataclasses
import random

from wattwise.telemetry.messages import FailSafePolicy, ReportReply
from wattwise.telemetry.vocabulary import AgentMode

#: Timer wake-ups jitter by a millisecond or so; a tick this close to the due time is on time.
_TICK_SLACK_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 15.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the n-th consecutive failure (n >= 1): in [d/2, d], d = min(max, base*2^(n-1))."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(max(failures - 1, 0), 30))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class OperatorLink:
    """Tracks replies and failures; answers which mode the agent is in and whether a report is due."""

    def __init__(
        self,
        started_at: float,
        default_fail_safe: FailSafePolicy | None,
        *,
        enabled: bool = True,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.enabled = enabled
        self.started_at = started_at
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self.last_reply: ReportReply | None = None
        self.last_reply_at: float | None = None
        self.failures = 0
        self.last_error: str | None = None
        self._next_attempt_at = started_at
        self._report_interval_s: float | None = None
        self._default_fail_safe = default_fail_safe
        self._mode = AgentMode.CONNECTED if enabled else AgentMode.STANDALONE
        self._mode_since = started_at
        self._mode = self.mode(started_at)

    @property
    def fail_safe(self) -> FailSafePolicy | None:
        """The operator's last word on the fail-safe (it may be null: keep limits); the agent's flags before."""
        if self.last_reply is not None:
            return self.last_reply.fail_safe
        return self._default_fail_safe

    def mode(self, now: float) -> AgentMode:
        if not self.enabled:
            return AgentMode.STANDALONE
        if self.last_reply_at is not None and self.failures == 0:
            return AgentMode.CONNECTED
        reference = self.last_reply_at if self.last_reply_at is not None else self.started_at
        policy = self.fail_safe
        grace = policy.grace_period_seconds if policy is not None else float("inf")
        return AgentMode.GRACE if now - reference < grace else AgentMode.FAIL_SAFE

    def mode_since(self, now: float) -> float:
        """When the current mode began (for the report and the logs)."""
        self._observe(now)
        return self._mode_since

    def due(self, now: float) -> bool:
        """Whether to report in the tick starting at `now` (a tick that wakes a hair early still counts)."""
        return self.enabled and now + _TICK_SLACK_S >= self._next_attempt_at

    def succeeded(self, now: float, reply: ReportReply, interval_s: float) -> None:
        self.last_reply, self.last_reply_at = reply, now
        self.failures, self.last_error = 0, None
        self._next_attempt_at = now + max(interval_s, reply.next_report_interval_seconds)
        self._observe(now)

    def failed(self, now: float, error: str) -> float:
        """Record a failed report; returns the back-off delay before the next attempt."""
        self.failures += 1
        self.last_error = error
        delay = self.backoff.delay(self.failures, self._rng)
        self._next_attempt_at = now + delay
        self._observe(now)
        return delay

    def _observe(self, now: float) -> None:
        mode = self.mode(now)
        if mode is not self._mode:
            self._mode, self._mode_since = mode, now
