"""Prometheus metrics for the node agent, read fresh from the agent's latest `Snapshot` on every scrape.

A custom collector rather than gauges updated by the loop: a value the GPU does not support, or a GPU that is
lost, is simply left out of the scrape (never exported as 0), and a label set disappears with its GPU.

Per-GPU series carry `node`, `gpu` (index), `uuid`, and where known `namespace`, `pod` (from PodResources;
comma-joined when a time-sliced GPU is shared) and `tier` (from the operator's reply).

The envelope loop's series (`wattwise_agent_envelope_*`, `wattwise_gpu_envelope_cap_watts`) come from its own
status, which it publishes every fast tick: they are as fresh as the scrape, not as the last 1 Hz tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wattwise.node_agent.agent import Snapshot
from wattwise.node_agent.backend import CLOCK_EVENT_REASONS, GpuReading
from wattwise.node_agent.envelope import EnvelopeStatus
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode, GpuStatus

GPU_LABELS = ["node", "gpu", "uuid", "namespace", "pod", "tier"]

_GAUGES: list[tuple[str, str, Callable[[GpuReading], float | None]]] = [
    ("wattwise_gpu_power_watts", "Instantaneous GPU power draw (NVML power usage).", lambda r: r.power_w),
    ("wattwise_gpu_power_limit_watts", "Power limit the GPU enforces.", lambda r: r.enforced_limit_w),
    ("wattwise_gpu_power_limit_min_watts", "Lowest power limit the GPU accepts.", lambda r: r.min_limit_w),
    ("wattwise_gpu_power_limit_max_watts", "Highest power limit the GPU accepts.", lambda r: r.max_limit_w),
    ("wattwise_gpu_power_limit_default_watts", "The GPU's default power limit.", lambda r: r.default_limit_w),
    ("wattwise_gpu_temperature_celsius", "GPU core temperature.", lambda r: r.temperature_c),
    ("wattwise_gpu_memory_temperature_celsius", "GPU memory (HBM) temperature.", lambda r: r.memory_temperature_c),
    (
        "wattwise_gpu_sm_clock_hertz",
        "Current SM clock.",
        lambda r: r.sm_clock_mhz * 1e6 if r.sm_clock_mhz is not None else None,
    ),
    (
        "wattwise_gpu_memory_clock_hertz",
        "Current memory clock.",
        lambda r: r.mem_clock_mhz * 1e6 if r.mem_clock_mhz is not None else None,
    ),
    (
        "wattwise_gpu_utilization_ratio",
        "Share of the last sample period the GPU was busy (0-1).",
        lambda r: r.utilization_gpu / 100 if r.utilization_gpu is not None else None,
    ),
    (
        "wattwise_gpu_memory_utilization_ratio",
        "Share of the last sample period the memory was busy (0-1).",
        lambda r: r.utilization_memory / 100 if r.utilization_memory is not None else None,
    ),
]


class AgentCollector(Collector):
    def __init__(
        self, node: str, snapshot: Callable[[], Snapshot], envelope: Callable[[], EnvelopeStatus] | None = None
    ) -> None:
        self.node = node
        self._snapshot = snapshot
        self._envelope = envelope

    def _labels(self, snap: Snapshot, r: GpuReading) -> list[str]:
        pods = snap.pods.get(r.uuid, [])
        directive = snap.directives.get(r.uuid)
        tier = directive.tier if directive is not None and directive.tier is not None else ""
        return [
            self.node,
            str(r.index),
            r.uuid,
            ",".join(sorted({p.namespace for p in pods})),
            ",".join(sorted({p.pod for p in pods})),
            tier,
        ]

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        labelled = [(r, self._labels(snap, r)) for r in snap.readings]
        ok = [(r, lbl) for r, lbl in labelled if r.status is GpuStatus.OK]

        for name, doc, value_of in _GAUGES:
            family = GaugeMetricFamily(name, doc, labels=GPU_LABELS)
            for r, lbl in ok:
                value = value_of(r)
                if value is not None:
                    family.add_metric(lbl, value)
            yield family

        avg = GaugeMetricFamily(
            "wattwise_gpu_average_power_watts",
            "Mean power since the previous sample, from the energy counter.",
            labels=GPU_LABELS,
        )
        energy = CounterMetricFamily(
            "wattwise_gpu_energy_joules", "Energy the GPU used since the driver loaded.", labels=GPU_LABELS
        )
        reasons = GaugeMetricFamily(
            "wattwise_gpu_clock_event_active",
            "1 while NVML reports this clocks-event (throttle) reason.",
            labels=[*GPU_LABELS, "reason"],
        )
        for r, lbl in ok:
            if r.uuid in snap.average_power_w:
                avg.add_metric(lbl, snap.average_power_w[r.uuid])
            if r.energy_j is not None:
                energy.add_metric(lbl, r.energy_j)
            if r.clock_event_reasons is not None:
                for bit, reason in CLOCK_EVENT_REASONS.items():
                    reasons.add_metric([*lbl, reason], 1.0 if r.clock_event_reasons & bit else 0.0)
        yield avg
        yield energy
        yield reasons

        info = GaugeMetricFamily(
            "wattwise_gpu_info", "Always 1; carries the GPU's model name.", labels=[*GPU_LABELS, "name"]
        )
        for r, lbl in labelled:
            if r.name is not None:
                info.add_metric([*lbl, r.name], 1.0)
        yield info

        up = GaugeMetricFamily(
            "wattwise_gpu_status", "1 for the GPU's current status (ok, lost, error).", labels=[*GPU_LABELS, "status"]
        )
        for r, lbl in labelled:
            for status in GpuStatus:
                up.add_metric([*lbl, status.value], 1.0 if r.status is status else 0.0)
        yield up

        target = GaugeMetricFamily(
            "wattwise_gpu_power_limit_target_watts",
            "Power limit the agent holds the GPU at (absent while Wattwise does not limit it).",
            labels=GPU_LABELS,
        )
        recommended = GaugeMetricFamily(
            "wattwise_gpu_power_limit_recommended_watts",
            "Power limit the operator would set (Recommend mode).",
            labels=GPU_LABELS,
        )
        result = GaugeMetricFamily(
            "wattwise_gpu_actuation_result",
            "1 for the outcome of the last power-limit action on the GPU.",
            labels=[*GPU_LABELS, "result"],
        )
        for r, lbl in labelled:
            if r.uuid in snap.held_limits_w:
                target.add_metric(lbl, snap.held_limits_w[r.uuid])
            directive = snap.directives.get(r.uuid)
            if directive is not None and directive.recommended_power_limit_watts is not None:
                recommended.add_metric(lbl, directive.recommended_power_limit_watts)
            act = snap.actuations.get(r.uuid)
            if act is not None:
                for res in ActuationResult:
                    result.add_metric([*lbl, res.value], 1.0 if act.result is res else 0.0)
        yield target
        yield recommended
        yield result

        yield from self._agent_metrics(snap)
        if self._envelope is not None:
            yield from self._envelope_metrics(self._envelope(), labelled)

    def _envelope_metrics(self, env: EnvelopeStatus, labelled: list[tuple[GpuReading, list[str]]]) -> Iterator[Metric]:
        node = [self.node]
        active = GaugeMetricFamily(
            "wattwise_agent_envelope_active",
            "1 while a node envelope from the operator steers this node's flexible (tolerant) GPUs.",
            labels=["node"],
        )
        active.add_metric(node, 1.0 if env.active else 0.0)
        yield active
        if not env.enabled:
            return
        watts = GaugeMetricFamily(
            "wattwise_agent_envelope_watts", "GPU watts the operator's plan counted this node at.", labels=["node"]
        )
        draw = GaugeMetricFamily(
            "wattwise_agent_envelope_protected_draw_watts",
            "Power of the GPUs the envelope protects (and those it does not steer) at the last fast tick.",
            labels=["node"],
        )
        if env.watts is not None:
            watts.add_metric(node, env.watts)
        if env.protected_draw_w is not None:
            draw.add_metric(node, env.protected_draw_w)
        yield watts
        yield draw
        caps = GaugeMetricFamily(
            "wattwise_gpu_envelope_cap_watts",
            "Cap the node envelope gives a flexible GPU at the last fast tick (its limit follows beyond 5 W up).",
            labels=GPU_LABELS,
        )
        for r, lbl in labelled:
            if r.uuid in env.caps_w:
                caps.add_metric(lbl, env.caps_w[r.uuid])
        yield caps
        adjustments = CounterMetricFamily(
            "wattwise_agent_envelope_adjustments", "Power-limit writes made by the envelope loop.", labels=["node"]
        )
        adjustments.add_metric(node, env.adjustments)
        yield adjustments
        ticks = CounterMetricFamily("wattwise_agent_envelope_ticks", "Envelope loop ticks run.", labels=["node"])
        ticks.add_metric(node, env.ticks)
        yield ticks
        errors = CounterMetricFamily(
            "wattwise_agent_envelope_tick_errors", "Envelope loop ticks that failed unexpectedly.", labels=["node"]
        )
        errors.add_metric(node, env.tick_errors)
        yield errors
        if env.tick_duration_s is not None:
            duration = GaugeMetricFamily(
                "wattwise_agent_envelope_tick_duration_seconds",
                "How long the last envelope tick took (power reads, share, writes).",
                labels=["node"],
            )
            duration.add_metric(node, env.tick_duration_s)
            yield duration

    def _agent_metrics(self, snap: Snapshot) -> Iterator[Metric]:
        node = [self.node]
        mode = GaugeMetricFamily(
            "wattwise_agent_operator_mode",
            "1 for the agent's current standing with the operator.",
            labels=["node", "mode"],
        )
        for m in AgentMode:
            mode.add_metric([*node, m.value], 1.0 if snap.mode is m else 0.0)
        yield mode

        reports = CounterMetricFamily(
            "wattwise_agent_reports", "Reports sent to the operator.", labels=["node", "result"]
        )
        reports.add_metric([*node, "ok"], snap.reports_ok)
        reports.add_metric([*node, "failed"], snap.reports_failed)
        yield reports

        ticks = CounterMetricFamily("wattwise_agent_samples", "Sampling ticks run.", labels=["node"])
        ticks.add_metric(node, snap.ticks)
        yield ticks
        tick_errors = CounterMetricFamily(
            "wattwise_agent_sample_errors", "Sampling ticks that failed unexpectedly.", labels=["node"]
        )
        tick_errors.add_metric(node, snap.tick_errors)
        yield tick_errors

        if snap.tick_duration_s is not None:
            duration = GaugeMetricFamily(
                "wattwise_agent_sample_duration_seconds", "How long the last tick took.", labels=["node"]
            )
            duration.add_metric(node, snap.tick_duration_s)
            yield duration
        if snap.last_reply_wall_s is not None:
            last = GaugeMetricFamily(
                "wattwise_agent_last_reply_timestamp_seconds", "When the operator last answered.", labels=["node"]
            )
            last.add_metric(node, snap.last_reply_wall_s)
            yield last

        pods = GaugeMetricFamily(
            "wattwise_agent_pod_attribution_current", "1 while the kubelet PodResources API answers.", labels=["node"]
        )
        pods.add_metric(node, 1.0 if snap.pods_known else 0.0)
        yield pods

        actuations = CounterMetricFamily(
            "wattwise_agent_actuations",
            "Power-limit and clock actions by outcome.",
            labels=["node", "action", "result"],
        )
        for (action, res), count in sorted(snap.actuation_counts.items()):
            actuations.add_metric([*node, action, res.value], count)
        yield actuations

        errors = CounterMetricFamily(
            "wattwise_agent_nvml_errors", "NVML calls that returned an error.", labels=["node", "call", "error"]
        )
        for (call, err), count in sorted(snap.nvml_error_counts.items()):
            errors.add_metric([*node, call, err], count)
        yield errors
