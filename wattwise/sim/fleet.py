"""A simulated site on a simulated clock: nodes of GPUs, tier pools of replicas, a power budget, the policy.

Each physics step (`physics_dt_s`, 100 ms by default) the replicas run for the step at their GPUs' speed, the
GPUs' load follows what the replicas did, and the GPU physics advances. Each control period (1 s) the
controller, if any, reads the GPUs as the node agent would (power averaged over the last second, like
nvmlDeviceGetPowerUsage on current GPUs) and its limits are applied through `GpuBank.set_power_limit(s)`. A
controller with a node-local fast loop (`FastController`) also sees every step's power, as an agent polling
instantaneous power would, and may set limits then.

The facility draw is metered per second (the mean of the steps in it), as a PDU or utility meter reports it.
Baseline and unmanaged runs use exactly this code with no controller.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from wattwise.crd.common import LatencyTier
from wattwise.sim.calibration import FloatArray, ServingProfile, serving_profile
from wattwise.sim.gpu import GpuBank, GpuSpec, gpu_uuid
from wattwise.sim.serving import BacklogReplicas, RequestLog, RequestReplicas, make_jobs
from wattwise.sim.trace import Trace

TIERS: tuple[LatencyTier, ...] = (LatencyTier.CRITICAL, LatencyTier.STANDARD, LatencyTier.TOLERANT)


@dataclass(frozen=True)
class TierPool:
    """The replicas of one tier: a request trace to serve, or (trace None) an endless backlog of batch jobs."""

    tier: LatencyTier
    replicas: int
    trace: Trace | None
    floor_w: float | None = None
    ceiling_w: float | None = None
    expected_w: float | None = None
    priority: int = 0
    #: For a backlog: requests per batch job, and the trace whose token counts the jobs are drawn from.
    job_requests: int = 256
    job_source: Trace | None = None


@dataclass(frozen=True)
class PowerDomain:
    """A power domain (facility, row, rack, PDU): its cap, its nodes and the non-GPU share of its power.

    `nodes` None means every node of the fleet (the site). A rack PDU meters IT power: give it pue 1.0.
    """

    cap_w: float
    per_node_base_w: float
    pue: float
    name: str = "site"
    nodes: tuple[int, ...] | None = None
    #: (time s, PUE) points, linear in between and flat outside: facility systems patching the PUE at run
    #: time (a heat wave). Empty: `pue` throughout.
    pue_schedule: tuple[tuple[float, float], ...] = ()
    target_utilization: float = 0.95
    lower_above_fraction: float = 0.98
    raise_below_fraction: float = 0.90
    ramp_w_per_s: float = 20.0

    def pue_at(self, times_s: FloatArray) -> FloatArray:
        if not self.pue_schedule:
            return np.full(np.shape(times_s), self.pue)
        xs = [t for t, _ in self.pue_schedule]
        ys = [p for _, p in self.pue_schedule]
        return np.asarray(np.interp(times_s, xs, ys), dtype=np.float64)


@dataclass(frozen=True)
class FleetConfig:
    spec: GpuSpec
    pools: tuple[TierPool, ...]
    site: PowerDomain
    duration_s: float
    gpus_per_node: int = 8
    tensor_parallel: int = 2
    physics_dt_s: float = 0.1
    control_period_s: float = 1.0
    seed: int = 0
    ambient_c: float = 25.0
    racks: tuple[PowerDomain, ...] = ()  # domains inside the site; every one of them holds at once

    def __post_init__(self) -> None:
        per_second = 1.0 / self.physics_dt_s
        if self.physics_dt_s <= 0 or abs(per_second - round(per_second)) > 1e-9:
            raise ValueError("physics_dt_s must divide one second (e.g. 0.1, 0.05, 0.5)")
        ratio = self.control_period_s / self.physics_dt_s
        if self.control_period_s < self.physics_dt_s or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError("control_period_s must be a whole number of physics steps")
        if not self.pools or any(p.replicas < 1 for p in self.pools):
            raise ValueError("a fleet needs at least one pool, each with at least one replica")
        if self.duration_s < 1:
            raise ValueError("duration_s must be at least one second")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError(f"power domain names must be unique: {names}")

    @property
    def domains(self) -> tuple[PowerDomain, ...]:
        return (self.site, *self.racks)

    def domain_nodes(self, domain: PowerDomain) -> tuple[int, ...]:
        """The fleet's nodes in a domain (a rack may name nodes this fleet does not have)."""
        every = range(self.node_count)
        return tuple(every) if domain.nodes is None else tuple(n for n in domain.nodes if n < self.node_count)

    @property
    def gpu_count(self) -> int:
        return sum(p.replicas for p in self.pools) * self.tensor_parallel

    @property
    def node_count(self) -> int:
        return -(-self.gpu_count // self.gpus_per_node)


@dataclass(frozen=True)
class GpuInfo:
    """What a controller knows about one GPU besides its readings."""

    uuid: str
    node: str
    node_index: int
    tier: LatencyTier
    floor_w: float | None
    ceiling_w: float | None
    expected_w: float | None
    priority: int


@dataclass(frozen=True)
class Readings:
    """One control tick's view of the fleet, as node agents would report it."""

    now_s: float
    power_w: FloatArray  # averaged over the last control period
    enforced_limit_w: FloatArray


class Controller(Protocol):
    """Anything that turns readings into limits (None: leave the limits alone this tick)."""

    def setup(self, config: FleetConfig, gpus: Sequence[GpuInfo]) -> None: ...

    def tick(self, readings: Readings) -> FloatArray | None: ...


@runtime_checkable
class FastController(Controller, Protocol):
    """A controller with a node-local loop too: called after every physics step with the GPUs' power then."""

    def fast_tick(self, power_w: FloatArray) -> FloatArray | None: ...


@dataclass
class RunResult:
    """Time series (one entry per simulated second) and per-request records of one run."""

    name: str
    config: FleetConfig
    gpus: list[GpuInfo]
    facility_w: FloatArray
    domain_w: dict[str, FloatArray]  # every domain's metered power per second (the site's is facility_w)
    gpu_w: FloatArray
    tier_gpu_w: dict[LatencyTier, FloatArray]
    limited_gpus: FloatArray  # GPUs whose limit is below their default, per second
    critical_limited_while_tolerant_above_floor: set[int]
    critical_ever_limited: set[int]
    tier_tokens: dict[LatencyTier, float]
    request_logs: dict[LatencyTier, RequestLog]
    job_completions: dict[LatencyTier, list[tuple[float, float]]]
    energy_j: float
    wall_s: float
    control_wall_s: float
    extra: dict[str, float] = field(default_factory=dict)


def node_name(index: int) -> str:
    return f"node-{index:02d}"


def replica_nodes(config: FleetConfig) -> list[int]:
    """The node of every replica, in pool order: spread round-robin over the nodes, as a scheduler spreading
    pods would place them, so every node (and rack) runs a mix of tiers."""
    per_node = config.gpus_per_node // config.tensor_parallel
    if per_node < 1 or config.gpus_per_node % config.tensor_parallel:
        raise ValueError("gpus_per_node must be a multiple of tensor_parallel")
    total = sum(p.replicas for p in config.pools)
    nodes = -(-total // per_node)
    free = [per_node] * nodes
    out: list[int] = []
    cursor = 0
    for _ in range(total):
        while free[cursor % nodes] == 0:
            cursor += 1
        node = cursor % nodes
        free[node] -= 1
        out.append(node)
        cursor += 1
    return out


def layout(config: FleetConfig) -> list[GpuInfo]:
    """GPUs in pool order, `tensor_parallel` per replica, replicas spread over the nodes (`replica_nodes`)."""
    placement = replica_nodes(config)
    out: list[GpuInfo] = []
    for pool in config.pools:
        for _ in range(pool.replicas * config.tensor_parallel):
            i = len(out)
            node = placement[i // config.tensor_parallel]
            out.append(
                GpuInfo(
                    uuid=gpu_uuid(config.seed, i),
                    node=node_name(node),
                    node_index=node,
                    tier=pool.tier,
                    floor_w=pool.floor_w,
                    ceiling_w=pool.ceiling_w,
                    expected_w=pool.expected_w,
                    priority=pool.priority,
                )
            )
    return out


def domain_power_w(config: FleetConfig, domain: PowerDomain, node_gpu_w: FloatArray) -> FloatArray:
    """A domain's power per second from per-node GPU power (seconds x nodes): (GPU + node base) x PUE."""
    nodes = list(config.domain_nodes(domain))
    gpu = node_gpu_w[:, nodes].sum(axis=1)
    pue = domain.pue_at(np.arange(len(gpu), dtype=np.float64) + 0.5)
    return np.asarray((gpu + len(nodes) * domain.per_node_base_w) * pue, dtype=np.float64)


def run_fleet(name: str, config: FleetConfig, controller: Controller | None = None) -> RunResult:
    """Run one fleet for `config.duration_s` simulated seconds; deterministic for a given config."""
    started = time.perf_counter()
    tp = config.tensor_parallel
    if config.spec.serving_hardware is None:
        raise ValueError(f"no serving profile for {config.spec.name}: the fleet simulator needs one")
    profile: ServingProfile = serving_profile(hardware=config.spec.serving_hardware, tensor_parallel=tp)
    gpus = layout(config)
    n = len(gpus)
    bank = GpuBank(config.spec, n, ambient_c=config.ambient_c)
    if controller is not None:
        controller.setup(config, gpus)
    fast = controller if isinstance(controller, FastController) else None

    # Pools: a slice of replicas (and of GPUs) each.
    servers: list[tuple[TierPool, slice, RequestReplicas | BacklogReplicas]] = []
    first = 0
    for k, pool in enumerate(config.pools):
        rs = slice(first, first + pool.replicas)
        first += pool.replicas
        if pool.trace is not None:
            server: RequestReplicas | BacklogReplicas = RequestReplicas(
                pool.replicas, RequestLog.from_trace(pool.trace, profile), profile
            )
        else:
            if pool.job_source is None:
                raise ValueError(f"{pool.tier.value} backlog pool needs a job_source trace")
            batch_jobs = make_jobs(pool.job_source, profile, 64, pool.job_requests, config.seed + 1000 + k)
            server = BacklogReplicas(pool.replicas, batch_jobs)
        servers.append((pool, rs, server))

    dt = config.physics_dt_s
    per_tick = max(1, round(config.control_period_s / dt))
    seconds = int(config.duration_s)
    steps = seconds * round(1.0 / dt)
    replicas = n // tp
    busy = np.zeros(replicas)
    compute = np.zeros(replicas)
    tier_of_gpu = np.array([TIERS.index(g.tier) for g in gpus])
    is_critical = tier_of_gpu == 0
    is_tolerant = tier_of_gpu == 2
    floors = np.array([g.floor_w if g.floor_w is not None else config.spec.min_limit_w for g in gpus])
    ceilings = np.array([g.ceiling_w if g.ceiling_w is not None else config.spec.max_limit_w for g in gpus])
    default = config.spec.default_limit_w

    tier_sec = np.zeros((seconds, len(TIERS)))
    node_of_gpu = np.array([g.node_index for g in gpus])
    node_sec = np.zeros((seconds, config.node_count))
    limited_sec = np.zeros(seconds)
    power_acc = np.zeros(n)
    acc_steps = 0
    crit_bad: set[int] = set()
    crit_limited: set[int] = set()
    control_wall = 0.0
    steps_per_second = round(1.0 / dt)

    for k in range(steps):
        now = k * dt
        speed = bank.throughput_factor.reshape(replicas, tp).min(axis=1)
        for _pool, rs, server in servers:
            if isinstance(server, RequestReplicas):
                server.admit(now + dt)
            b, c = server.advance(now, dt, speed[rs])
            busy[rs] = b
            compute[rs] = c
        bank.set_load(np.repeat(busy, tp), np.repeat(compute, tp))
        bank.step(dt)
        power_acc += bank.power_w
        acc_steps += 1
        sec = k // steps_per_second
        tier_sec[sec] += np.bincount(tier_of_gpu, weights=bank.power_w, minlength=len(TIERS))
        node_sec[sec] += np.bincount(node_of_gpu, weights=bank.power_w, minlength=config.node_count)

        if (k + 1) % per_tick == 0:
            if controller is not None:
                readings = Readings(
                    now_s=now + dt, power_w=power_acc / acc_steps, enforced_limit_w=bank.power_limit_w.copy()
                )
                t0 = time.perf_counter()
                limits = controller.tick(readings)
                control_wall += time.perf_counter() - t0
                if limits is not None:
                    bank.set_power_limits(limits)
            power_acc[:] = 0.0
            acc_steps = 0
        if fast is not None:
            guarded = fast.fast_tick(bank.power_w)
            if guarded is not None:
                bank.set_power_limits(guarded)
        if (k + 1) % per_tick == 0 or fast is not None:  # whenever limits may have moved
            lim = bank.power_limit_w
            crit_now = np.flatnonzero(is_critical & (lim < ceilings - 0.5))
            crit_limited.update(int(i) for i in crit_now)
            if len(crit_now) and bool(np.any(is_tolerant & (lim > floors + 0.5))):
                crit_bad.update(int(i) for i in crit_now)
        if (k + 1) % steps_per_second == 0:
            limited_sec[sec] = float(np.count_nonzero(bank.power_limit_w < default - 0.5))

    tier_sec /= steps_per_second
    node_sec /= steps_per_second
    domain_w = {d.name: domain_power_w(config, d, node_sec) for d in config.domains}
    gpu_sec = tier_sec.sum(axis=1)
    tier_tokens = dict.fromkeys(TIERS, 0.0)
    logs: dict[LatencyTier, RequestLog] = {}
    jobs: dict[LatencyTier, list[tuple[float, float]]] = {}
    for pool, _rs, server in servers:
        tier_tokens[pool.tier] += float(server.tokens.sum())
        if isinstance(server, RequestReplicas):
            logs[pool.tier] = server.log
        else:
            jobs.setdefault(pool.tier, []).extend(server.completions)

    return RunResult(
        name=name,
        config=config,
        gpus=gpus,
        facility_w=domain_w[config.site.name],
        domain_w=domain_w,
        gpu_w=gpu_sec,
        tier_gpu_w={t: tier_sec[:, i].copy() for i, t in enumerate(TIERS)},
        limited_gpus=limited_sec,
        critical_limited_while_tolerant_above_floor=crit_bad,
        critical_ever_limited=crit_limited,
        tier_tokens=tier_tokens,
        request_logs=logs,
        job_completions=jobs,
        energy_j=float(bank.energy_j.sum()),
        wall_s=time.perf_counter() - started,
        control_wall_s=control_wall,
    )


def tier_counts(gpus: Sequence[GpuInfo]) -> Mapping[LatencyTier, int]:
    return {t: sum(1 for g in gpus if g.tier is t) for t in TIERS}
