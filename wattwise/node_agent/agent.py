"""The agent's loop: every interval, sample every GPU, attribute GPUs to pods, report, apply the reply.

One thread runs the loop; everything it learns is published as an immutable `Snapshot` (one reference swap)
that the metrics and health endpoints read from other threads without locks. A failure inside one tick is
logged and counted and the next tick runs as usual: the agent must outlive any one bad reading.

Order within a tick: sample -> (every `pods_interval_s`) PodResources -> report if due -> apply limits. The
report carries the outcome of the previous tick's actuation, so the operator sees each read-back one
interval after the write.

A second thread runs the envelope loop (`envelope.EnvelopeLoop`, every `envelope_interval_s`, 100 ms by default):
while the operator's last reply carries a valid node envelope, it sets the limits of the node's flexible GPUs and
this loop leaves them alone. Each loop keeps its own schedule: a slow report never delays a fast tick, and the
two share only the Actuator (under its lock, held for writes only) and immutable references.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import wattwise
from wattwise.node_agent.actuation import Actuator
from wattwise.node_agent.backend import GpuBackend, GpuReading, reason_names
from wattwise.node_agent.envelope import EnvelopeLoop
from wattwise.node_agent.link import OperatorLink
from wattwise.node_agent.podresources.client import PodResourcesClient, PodResourcesError, attribute
from wattwise.node_agent.reporter import Reporter, ReportFailed
from wattwise.telemetry import messages
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentConfig:
    node: str
    interval_s: float = 1.0
    pods_interval_s: float = 10.0
    keep_limits_on_exit: bool = False
    pod_name: str | None = None
    #: used until the operator's first reply says otherwise (None: keep limits when the operator is gone)
    default_fail_safe: messages.FailSafePolicy | None = None
    #: seconds between two fast ticks of the envelope loop; 0: envelopes are ignored (and no `capped` is sent)
    envelope_interval_s: float = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the agent knows after a tick; read by /metrics and the health checks."""

    readings: tuple[GpuReading, ...] = ()
    average_power_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    pods: Mapping[str, list[messages.PodRef]] = dataclasses.field(default_factory=dict)
    pods_known: bool = False
    directives: Mapping[str, messages.GpuDirective] = dataclasses.field(default_factory=dict)
    actuations: Mapping[str, messages.Actuation] = dataclasses.field(default_factory=dict)
    held_limits_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    mode: AgentMode = AgentMode.STANDALONE
    ticks: int = 0
    tick_errors: int = 0
    reports_ok: int = 0
    reports_failed: int = 0
    last_reply_wall_s: float | None = None
    last_tick_monotonic_s: float | None = None
    tick_duration_s: float | None = None
    actuation_counts: Mapping[tuple[str, ActuationResult], int] = dataclasses.field(default_factory=dict)
    nvml_error_counts: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    issues: tuple[messages.Issue, ...] = ()


class NodeAgent:
    def __init__(
        self,
        config: AgentConfig,
        backend: GpuBackend,
        *,
        reporter: Reporter | None = None,
        pods: PodResourcesClient | None = None,
        clock: Any = time,
        link: OperatorLink | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.reporter = reporter
        self.pods_client = pods
        self.clock = clock
        self.actuator = Actuator(backend)
        self.envelopes = EnvelopeLoop(
            backend,
            self.actuator,
            interval_s=config.envelope_interval_s if reporter is not None else 0.0,  # standalone: no replies
            release=self._hand_back,
            clock=clock,
        )
        started = clock.monotonic()
        self.started_wall = clock.time()
        self._wall_offset = self.started_wall - started
        self.link = link or OperatorLink(started, config.default_fail_safe, enabled=reporter is not None)
        self.snapshot = Snapshot()
        self._sequence = 0
        self._prev_energy: dict[str, tuple[float, float]] = {}
        self._pods: dict[str, list[messages.PodRef]] = {}
        self._pods_known = False
        self._pods_issue: messages.Issue | None = None
        self._pods_due = started
        self._counts = {"ticks": 0, "tick_errors": 0, "reports_ok": 0, "reports_failed": 0}
        self._last_mode = self.link.mode(started)

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open NVML and enumerate GPUs; raises NvmlUnavailable if that cannot work on this node."""
        self.backend.start()

    def run(self, stop: threading.Event) -> None:
        """Tick every interval until `stop` is set; ticks stay on a fixed schedule and never burst to catch up.
        The envelope loop runs beside it in its own thread, stopped by the same event and joined before return."""
        fast = None
        if self.envelopes.enabled:
            fast = threading.Thread(target=self.envelopes.run, args=(stop,), name="wattwise-envelope", daemon=True)
            fast.start()
        interval = self.config.interval_s
        next_at = self.clock.monotonic()
        try:
            while not stop.is_set():
                self.tick_safely()
                next_at += interval
                now = self.clock.monotonic()
                if next_at < now:  # fell behind (a slow NVML call): skip the missed ticks
                    next_at = now + interval
                stop.wait(max(0.0, next_at - now))
        finally:
            stop.set()
            if fast is not None:
                self.envelopes.wake()
                fast.join(timeout=10)  # before close() restores limits: no envelope write may come after

    def close(self) -> None:
        """Undo what this agent set (unless told to keep it), then release NVML and HTTP (gRPC holds nothing
        between calls)."""
        try:
            if not self.config.keep_limits_on_exit and (self.actuator.owned or self.actuator.locked):
                # a fresh sample: the last snapshot predates the last tick's writes
                self.actuator.restore_all(self.backend.sample(), self.clock.monotonic())
        finally:
            self.backend.close()
            if self.reporter is not None:
                self.reporter.close()

    # --- one tick --------------------------------------------------------------------------------------------

    def tick_safely(self) -> None:
        try:
            self.tick()
        except Exception:
            self._counts["tick_errors"] += 1
            n = self._counts["tick_errors"]
            if n == 1 or n % 60 == 0:  # the traceback once, then a reminder a minute, not a flood at 1 Hz
                log.exception("tick failed (%d so far); carrying on", n)
            self.snapshot = dataclasses.replace(self.snapshot, tick_errors=self._counts["tick_errors"])

    def tick(self) -> None:
        began = self.clock.monotonic()
        readings = self.backend.sample()
        self.envelopes.observe(readings)
        average = self._average_power(readings)
        if self.pods_client is not None and began >= self._pods_due:
            self._refresh_pods(readings)
            self._pods_due = began + self.config.pods_interval_s
        if self.link.due(began):
            self._report(readings, average, began)
        now = self.clock.monotonic()
        mode = self.link.mode(now)
        if mode is not self._last_mode:
            level = logging.INFO if mode is AgentMode.CONNECTED else logging.WARNING
            log.log(level, "operator link: %s -> %s (%s)", self._last_mode, mode, self.link.last_error or "ok")
            self._last_mode = mode
        reply = self.link.last_reply
        directives = dict(reply.gpus) if reply is not None else {}
        if mode is AgentMode.FAIL_SAFE:
            self.envelopes.offer(None, {}, now)  # the fail-safe drops the envelope (it has expired by then anyway)
        steered = self.envelopes.steering(now)
        self.actuator.apply(readings, mode, directives, self.link.fail_safe, now, skip_limits=steered)
        self._counts["ticks"] += 1
        session = getattr(self.backend, "session", None)
        actuations, held, actuation_counts = self.actuator.view()
        self.snapshot = Snapshot(
            readings=tuple(readings),
            average_power_w=average,
            pods=dict(self._pods),
            pods_known=self._pods_known,
            directives=directives,
            actuations=actuations,
            held_limits_w=held,
            mode=mode,
            ticks=self._counts["ticks"],
            tick_errors=self._counts["tick_errors"],
            reports_ok=self._counts["reports_ok"],
            reports_failed=self._counts["reports_failed"],
            last_reply_wall_s=self._wall(self.link.last_reply_at),
            last_tick_monotonic_s=now,
            tick_duration_s=self.clock.monotonic() - began,
            actuation_counts=actuation_counts,
            nvml_error_counts=session.errors() if session is not None else {},
            issues=self._issues(),
        )

    def _wall(self, monotonic_s: float | None) -> float | None:
        return monotonic_s + self._wall_offset if monotonic_s is not None else None

    def _average_power(self, readings: list[GpuReading]) -> dict[str, float]:
        """Mean power since the previous sample from the energy counter (exact where the GPU has one)."""
        out: dict[str, float] = {}
        for r in readings:
            if r.energy_j is None:
                self._prev_energy.pop(r.uuid, None)
                continue
            prev = self._prev_energy.get(r.uuid)
            self._prev_energy[r.uuid] = (r.energy_j, r.monotonic_s)
            if prev is not None and r.monotonic_s > prev[1] and r.energy_j >= prev[0]:
                out[r.uuid] = (r.energy_j - prev[0]) / (r.monotonic_s - prev[1])
        return out

    def _refresh_pods(self, readings: list[GpuReading]) -> None:
        assert self.pods_client is not None
        try:
            assignments = self.pods_client.list()
        except PodResourcesError as exc:
            if self._pods_issue is None:
                log.warning("%s; pod attribution is stale until it answers", exc)
            self._pods_known = False
            self._pods_issue = messages.Issue(code="PodResourcesUnavailable", message=str(exc))
            return
        if self._pods_issue is not None:
            log.info("PodResources answers again")
        self._pods = attribute(assignments, {r.index: r.uuid for r in readings})
        self._pods_known, self._pods_issue = True, None

    def _issues(self) -> tuple[messages.Issue, ...]:
        issues = [self._pods_issue] if self._pods_issue is not None else []
        for uuid, act in self.actuator.view()[0].items():
            if act.result is ActuationResult.NO_PERMISSION:
                issues.append(messages.Issue(code="NvmlNoPermission", message=f"{uuid}: {act.message}"))
                break
        return tuple(issues)

    # --- reporting -------------------------------------------------------------------------------------------

    def build_report(self, readings: list[GpuReading], average: Mapping[str, float], now: float) -> messages.NodeReport:
        snapshot = self.snapshot
        capped = self.envelopes.take_capped()
        return messages.NodeReport(
            node=self.config.node,
            agent=messages.AgentInfo(
                version=wattwise.__version__,
                backend=self.backend.name,
                started_at=_utc(self.started_wall),
                pod=self.config.pod_name,
            ),
            sequence=self._sequence,
            sent_at=_utc(self.clock.time()),
            sample_interval_seconds=self.config.interval_s,
            state=messages.AgentState(
                mode=self.link.mode(now),
                since=_utc(self._wall_offset + self.link.mode_since(now)),
                last_reply_at=_utc(self._wall(self.link.last_reply_at)),
                consecutive_failures=self.link.failures,
            ),
            gpus=[
                gpu_report(
                    r,
                    average.get(r.uuid),
                    self._pods.get(r.uuid, []),
                    snapshot.actuations.get(r.uuid),
                    capped.get(r.uuid),
                )
                for r in readings
            ],
            pods_known=self._pods_known,
            issues=list(self._issues()),
        )

    def _report(self, readings: list[GpuReading], average: Mapping[str, float], now: float) -> None:
        assert self.reporter is not None
        report = self.build_report(readings, average, now)
        self._sequence += 1
        try:
            reply = self.reporter.send(report)
        except ReportFailed as exc:
            self._counts["reports_failed"] += 1
            delay = self.link.failed(now, str(exc))
            if self.link.failures == 1 or self.link.failures % 30 == 0:
                log.warning("report failed (%d in a row, next try in %.1f s): %s", self.link.failures, delay, exc)
            return
        self._counts["reports_ok"] += 1
        # scheduled from the tick's start, so the next tick (one interval later) is due again
        self.link.succeeded(now, reply, self.config.interval_s)
        self._offer_envelope(reply, now)

    # --- the node envelope -----------------------------------------------------------------------------------

    def _offer_envelope(self, reply: messages.ReportReply, sent_at: float) -> None:
        """Hand the reply's envelope (or its absence) to the envelope loop, valid from when the reply arrived and
        never past the grace period (the fail-safe drops it), which counts from when the report was sent."""
        envelope = reply.envelope
        if envelope is None:
            self.envelopes.offer(None, reply.gpus, sent_at)
            return
        valid_until = self.clock.monotonic() + envelope.valid_for_seconds
        if reply.fail_safe is not None:
            valid_until = min(valid_until, sent_at + reply.fail_safe.grace_period_seconds)
        self.envelopes.offer(envelope.to_policy(self.config.node), reply.gpus, valid_until)

    def _hand_back(self, readings: list[GpuReading], now: float) -> None:
        """GPUs the envelope loop stops steering get the per-GPU limits at once, as the 1 Hz tick would set them
        (called from the envelope thread, under the Actuator's lock)."""
        reply = self.link.last_reply
        directives = dict(reply.gpus) if reply is not None else {}
        self.actuator.apply(readings, self.link.mode(now), directives, self.link.fail_safe, now)


def _utc(wall_s: float | None) -> Any:
    return dt.datetime.fromtimestamp(wall_s, dt.UTC) if wall_s is not None else None


def gpu_report(
    r: GpuReading,
    average_w: float | None,
    pods: list[messages.PodRef],
    actuation: messages.Actuation | None,
    capped: bool | None = None,
) -> messages.GpuReport:
    """The wire form of one reading; unsupported values stay absent (`capped` too, unless an envelope steered it)."""
    limits = None
    if r.min_limit_w is not None and r.max_limit_w is not None and r.default_limit_w is not None:
        limits = messages.LimitConstraints(
            min_watts=r.min_limit_w, max_watts=r.max_limit_w, default_watts=r.default_limit_w
        )
    return messages.GpuReport(
        uuid=r.uuid,
        index=r.index,
        name=r.name,
        status=r.status,
        error=r.error,
        sampled_at=dt.datetime.fromtimestamp(r.wall_s, dt.UTC),
        power_watts=r.power_w,
        average_power_watts=average_w,
        energy_joules=r.energy_j,
        enforced_limit_watts=r.enforced_limit_w,
        limits=limits,
        temperature_celsius=r.temperature_c,
        memory_temperature_celsius=r.memory_temperature_c,
        sm_clock_mhz=r.sm_clock_mhz,
        memory_clock_mhz=r.mem_clock_mhz,
        utilization_percent=r.utilization_gpu,
        memory_utilization_percent=r.utilization_memory,
        clock_event_reasons=r.clock_event_reasons,
        clock_event_reason_names=reason_names(r.clock_event_reasons) if r.clock_event_reasons is not None else None,
        pods=pods,
        actuation=actuation,
        capped=capped,
    )
