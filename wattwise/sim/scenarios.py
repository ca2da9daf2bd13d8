"""Named scenarios: the site, its pools and its workload, built the same way for every run being compared.

`headline`: a site whose cap fits N H100s at full power, run three ways on the same workload code and seed:
(a) baseline, N GPUs, no control; (b) unmanaged, N x (1 + extra) GPUs, no control; (c) wattwise, the same
N x (1 + extra) GPUs with the policy in the loop. The extra GPUs serve tolerant batch work. The constants and
why they are what they are: docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wattwise.crd.common import LatencyTier
from wattwise.sim.controller import PolicyController
from wattwise.sim.fleet import Controller, FleetConfig, PowerDomain, TierPool
from wattwise.sim.gpu import GPU_SPECS, GpuSpec
from wattwise.sim.trace import Trace, scale_trace, shipped_trace


@dataclass(frozen=True)
class HeadlineParams:
    """Knobs of the headline scenario; the defaults are what `make demo` runs."""

    gpus: int = 48  # N: the cap fits this many GPUs at full power
    extra_gpus: float = 0.3  # oversubscription: (b) and (c) run N x (1 + extra) GPUs
    gpu: str = "h100"
    tensor_parallel: int = 2
    gpus_per_node: int = 8
    critical_share: float = 1 / 3  # of the N GPUs' replicas
    standard_share: float = 1 / 6
    critical_scale: float = 1.0  # request-rate multiplier of the trace for the critical tier
    standard_scale: float = 1.0
    per_node_base_w: float = 2000.0  # CPUs, memory, NICs, NVSwitch, fans of an 8-GPU HGX node
    pue: float = 1.15
    target_utilization: float = 0.98  # the site's PowerBudget; why not the CRD's default 0.95: docs/simulator.md
    envelopes: bool = True  # node envelopes between decisions (False: a 1 Hz-only loop)
    heatwave_pue: float | None = None  # the site's PUE ramps to this mid-run (40%-50%), holds, then recovers
    rack_nodes: int = 0  # > 0: also a rack PDU budget per this many nodes (a domain inside the site)
    rack_cap_fraction: float = 0.85  # a rack's cap as a share of its nodes' IT power at full GPU power
    duration_s: float | None = None  # default: the whole trace
    physics_dt_s: float = 0.1
    seed: int = 0
    job_requests: int = 256


@dataclass(frozen=True)
class ScenarioRun:
    name: str
    label: str
    config: FleetConfig
    controller: Controller | None


def headline_cap_w(spec: GpuSpec, gpus: int, gpus_per_node: int, per_node_base_w: float, pue: float) -> float:
    """The facility cap that fits `gpus` at full power: (N x max limit + their nodes' base) x PUE."""
    nodes = -(-gpus // gpus_per_node)
    return (gpus * spec.max_limit_w + nodes * per_node_base_w) * pue


def rack_domains(config: FleetConfig, params: HeadlineParams) -> tuple[PowerDomain, ...]:
    """One rack PDU budget per `rack_nodes` nodes: IT power (no PUE), capped at a share of its full draw."""
    per_node_full = config.gpus_per_node * config.spec.max_limit_w + params.per_node_base_w
    racks = []
    for first in range(0, config.node_count, params.rack_nodes):
        nodes = tuple(range(first, min(first + params.rack_nodes, config.node_count)))
        racks.append(
            PowerDomain(
                cap_w=params.rack_cap_fraction * per_node_full * len(nodes),
                per_node_base_w=params.per_node_base_w,
                pue=1.0,
                name=f"rack-{first // params.rack_nodes}",
                nodes=nodes,
                target_utilization=params.target_utilization,
            )
        )
    return tuple(racks)


def headline(params: HeadlineParams, trace: Trace | None = None) -> list[ScenarioRun]:
    """The three runs of the headline scenario, ready for `run_fleet`."""
    spec = GPU_SPECS[params.gpu]
    tp = params.tensor_parallel
    if params.gpus % tp or params.gpus < 3 * tp:
        raise ValueError(f"--gpus must be a multiple of {tp} and at least {3 * tp}")
    if params.extra_gpus < 0:
        raise ValueError("--extra-gpus must be >= 0")
    if params.rack_nodes < 0 or not 0 < params.rack_cap_fraction <= 1:
        raise ValueError("--rack-nodes must be >= 0 and --rack-cap in (0, 1]")
    source = trace if trace is not None else shipped_trace()
    duration = params.duration_s if params.duration_s is not None else source.duration_s
    source = source.window(0.0, duration)
    replicas = params.gpus // tp
    critical = max(1, round(replicas * params.critical_share))
    standard = max(1, round(replicas * params.standard_share))
    tolerant = replicas - critical - standard
    if tolerant < 1:
        raise ValueError("no replicas left for the tolerant tier: lower the critical/standard shares")
    extra = round(params.gpus * params.extra_gpus / tp)

    critical_trace = scale_trace(source, params.critical_scale, seed=params.seed)
    # The standard tier sees the same service half a trace later: its bursts do not line up with critical's.
    standard_trace = scale_trace(
        source.window(source.duration_s / 2, source.duration_s), params.standard_scale, seed=params.seed + 1
    )
    pools = (
        TierPool(
            LatencyTier.CRITICAL,
            critical,
            critical_trace,
            floor_w=0.9 * spec.default_limit_w,
            expected_w=600.0 / 700.0 * spec.max_limit_w,
            priority=100,
        ),
        TierPool(
            LatencyTier.STANDARD,
            standard,
            standard_trace,
            floor_w=0.5 * spec.default_limit_w,
            expected_w=400.0 / 700.0 * spec.max_limit_w,
        ),
        TierPool(
            LatencyTier.TOLERANT,
            tolerant,
            None,
            floor_w=spec.min_limit_w,
            expected_w=450.0 / 700.0 * spec.max_limit_w,
            job_requests=params.job_requests,
            job_source=source,
        ),
    )
    schedule: tuple[tuple[float, float], ...] = ()
    if params.heatwave_pue is not None:
        d, p0, p1 = duration, params.pue, params.heatwave_pue
        schedule = ((0.4 * d, p0), (0.5 * d, p1), (0.7 * d, p1), (0.8 * d, p0))
    site = PowerDomain(
        cap_w=headline_cap_w(spec, params.gpus, params.gpus_per_node, params.per_node_base_w, params.pue),
        per_node_base_w=params.per_node_base_w,
        pue=params.pue,
        target_utilization=params.target_utilization,
        pue_schedule=schedule,
    )
    base = FleetConfig(
        spec=spec,
        pools=pools,
        site=site,
        duration_s=duration,
        gpus_per_node=params.gpus_per_node,
        tensor_parallel=tp,
        physics_dt_s=params.physics_dt_s,
        seed=params.seed,
    )
    grown = replace(base, pools=(*pools[:2], replace(pools[2], replicas=tolerant + extra)))
    if params.rack_nodes > 0:
        base = replace(base, racks=rack_domains(base, params))
        grown = replace(grown, racks=rack_domains(grown, params))
    n, m = base.gpu_count, grown.gpu_count
    return [
        ScenarioRun("baseline", f"(a) baseline, {n} GPUs, no control", base, None),
        ScenarioRun("unmanaged", f"(b) unmanaged, {m} GPUs, no control", grown, None),
        ScenarioRun(
            "wattwise",
            f"(c) wattwise, {m} GPUs, policy in the loop",
            grown,
            PolicyController(envelopes=params.envelopes),
        ),
    ]


SCENARIOS = {"headline": headline}
