"""The fleet: replicas serve requests, the router balances, runs are deterministic, controllers are obeyed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from wattwise.crd.common import LatencyTier
from wattwise.sim.calibration import FloatArray, serving_profile
from wattwise.sim.controller import PolicyController
from wattwise.sim.fleet import FleetConfig, GpuInfo, PowerDomain, Readings, TierPool, layout, run_fleet
from wattwise.sim.gpu import A40, H100_SXM
from wattwise.sim.serving import BacklogReplicas, RequestLog, RequestReplicas, make_jobs
from wattwise.sim.trace import Trace, shipped_trace


def small_trace(n: int = 6, gap_s: float = 0.5, context: int = 1024, generated: int = 20) -> Trace:
    return Trace(
        name="small",
        arrival_s=np.arange(n, dtype=np.float64) * np.float64(gap_s),
        context_tokens=np.full(n, context, dtype=np.int64),
        generated_tokens=np.full(n, generated, dtype=np.int64),
    )


def small_config(duration_s: float = 60.0, seed: int = 0) -> FleetConfig:
    source = shipped_trace().window(0.0, duration_s)
    pools = (
        TierPool(LatencyTier.CRITICAL, 2, source, floor_w=630.0, expected_w=600.0, priority=100),
        TierPool(LatencyTier.STANDARD, 1, source.window(600.0, duration_s), floor_w=350.0),
        TierPool(LatencyTier.TOLERANT, 2, None, floor_w=200.0, job_requests=16, job_source=source),
    )
    site = PowerDomain(cap_w=(10 * 700 + 2 * 2000) * 1.15, per_node_base_w=2000.0, pue=1.15)
    return FleetConfig(spec=H100_SXM, pools=pools, site=site, duration_s=duration_s, seed=seed)


def test_one_request_takes_prefill_then_decode_steps() -> None:
    profile = serving_profile()
    log = RequestLog.from_trace(small_trace(n=1, generated=11), profile)
    pool = RequestReplicas(1, log, profile)
    pool.admit(0.1)
    busy_share = []
    for k in range(50):
        busy, compute = pool.advance(k * 0.1, 0.1, np.ones(1))
        busy_share.append((busy[0], compute[0]))
    prefill = float(profile.prefill_time_s(np.array([1024.0]))[0])
    step = float(profile.decode_step_time_s(np.array([1.0]))[0])
    assert log.first_token_s[0] == pytest.approx(prefill)
    assert log.done_s[0] == pytest.approx(prefill + 10 * step)
    assert busy_share[0] == (1.0, 1.0)  # first 100 ms: all prefill
    assert busy_share[-1] == (0.0, 0.0)  # done: idle
    assert pool.tokens[0] == pytest.approx(1024 + 11)


def test_slower_gpu_means_later_completion() -> None:
    profile = serving_profile()
    done = []
    for speed in (1.0, 0.5):
        log = RequestLog.from_trace(small_trace(n=1), profile)
        pool = RequestReplicas(1, log, profile)
        pool.admit(0.1)
        for k in range(100):
            pool.advance(k * 0.1, 0.1, np.full(1, speed))
        done.append(float(log.done_s[0]))
    assert done[1] == pytest.approx(2 * done[0], rel=0.05)


def test_router_sends_each_request_to_the_least_loaded_replica() -> None:
    profile = serving_profile()
    log = RequestLog.from_trace(small_trace(n=6, gap_s=0.0), profile)
    pool = RequestReplicas(3, log, profile)
    pool.admit(1.0)
    assert [r.outstanding for r in pool.replicas] == [2, 2, 2]


def test_decode_batch_is_capped_and_queue_drains() -> None:
    profile = serving_profile()
    n = profile.max_batch + 8
    log = RequestLog.from_trace(small_trace(n=n, gap_s=0.0, context=128, generated=200), profile)
    pool = RequestReplicas(1, log, profile)
    pool.admit(0.1)
    for k in range(20):
        pool.advance(k * 0.1, 0.1, np.ones(1))
    replica = pool.replicas[0]
    assert len(replica.decoding) == profile.max_batch
    assert len(replica.waiting) == 8 - (replica.prefill_id >= 0)
    for k in range(20, 2000):
        pool.advance(k * 0.1, 0.1, np.ones(1))
    assert np.all(np.isfinite(log.done_s))


def test_backlog_runs_jobs_back_to_back() -> None:
    profile = serving_profile()
    jobs = make_jobs(shipped_trace(), profile, 4, 8, seed=1)
    assert all(0 < j.compute_fraction < 1 and j.work_s > 0 for j in jobs)
    pool = BacklogReplicas(2, jobs)
    speed = np.array([1.0, 0.5])
    for k in range(600):
        busy, _ = pool.advance(k * 0.1, 0.1, speed)
        assert np.all(busy == 1.0)
    fast = [d for e, d in pool.completions]
    assert len(fast) >= 2
    assert pool.tokens[0] > pool.tokens[1] * 1.8  # half the speed, about half the tokens


def test_layout_spreads_tensor_parallel_pairs_over_nodes() -> None:
    gpus = layout(small_config())  # 5 replicas of 2 GPUs, 8 GPUs per node -> 2 nodes
    assert len(gpus) == 10
    assert [g.node for g in gpus] == ["node-00"] * 2 + ["node-01"] * 2 + ["node-00"] * 2 + ["node-01"] * 2 + [
        "node-00"
    ] * 2
    assert [g.tier for g in gpus[:4]] == [LatencyTier.CRITICAL] * 4
    assert len({g.uuid for g in gpus}) == 10
    assert sum(g.node == "node-00" for g in gpus) <= 8


def test_fleet_run_is_deterministic_by_seed() -> None:
    a = run_fleet("a", small_config(seed=3))
    b = run_fleet("b", small_config(seed=3))
    assert np.array_equal(a.facility_w, b.facility_w)
    assert a.tier_tokens == b.tier_tokens
    assert np.array_equal(
        a.request_logs[LatencyTier.CRITICAL].done_s, b.request_logs[LatencyTier.CRITICAL].done_s, equal_nan=True
    )
    c = run_fleet("c", small_config(seed=4))
    assert c.gpus[0].uuid != a.gpus[0].uuid


def test_unmanaged_fleet_never_limits_and_meters_every_second() -> None:
    result = run_fleet("u", small_config(duration_s=30.0))
    assert len(result.facility_w) == 30
    assert np.all(result.limited_gpus == 0)
    assert not result.critical_ever_limited
    gpu_sum = sum(result.tier_gpu_w.values())
    assert np.allclose(gpu_sum, result.gpu_w)
    assert np.allclose(result.facility_w, (result.gpu_w + 2 * 2000.0) * 1.15)
    assert result.tier_tokens[LatencyTier.TOLERANT] > 0


class FixedLimits:
    """A controller that limits every tolerant GPU to 300 W and records what it saw."""

    def __init__(self) -> None:
        self.seen: list[Readings] = []
        self.gpus: list[GpuInfo] = []

    def setup(self, config: FleetConfig, gpus: Sequence[GpuInfo]) -> None:
        self.gpus = list(gpus)

    def tick(self, readings: Readings) -> FloatArray | None:
        self.seen.append(readings)
        limits = readings.enforced_limit_w.copy()
        for i, g in enumerate(self.gpus):
            if g.tier is LatencyTier.TOLERANT:
                limits[i] = 300.0
        return limits


def test_controller_limits_are_applied_and_cost_tolerant_throughput() -> None:
    free = run_fleet("free", small_config(duration_s=30.0))
    spy = FixedLimits()
    limited = run_fleet("limited", small_config(duration_s=30.0), spy)
    assert len(spy.seen) == 30
    assert spy.seen[0].now_s == pytest.approx(1.0)
    assert np.all(limited.tier_gpu_w[LatencyTier.TOLERANT][2:] <= 4 * 300.0 + 1e-6)
    assert limited.tier_tokens[LatencyTier.TOLERANT] < free.tier_tokens[LatencyTier.TOLERANT]
    assert limited.tier_tokens[LatencyTier.CRITICAL] == free.tier_tokens[LatencyTier.CRITICAL]
    assert np.all(limited.limited_gpus[1:] == 4)


def test_controller_out_of_range_limit_is_refused() -> None:
    class Bad(FixedLimits):
        def tick(self, readings: Readings) -> FloatArray | None:
            return np.full(len(readings.power_w), 50.0)

    with pytest.raises(ValueError, match="outside"):
        run_fleet("bad", replace(small_config(duration_s=5.0)), Bad())


def test_gpu_without_a_serving_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="no serving profile"):
        run_fleet("a40", replace(small_config(duration_s=5.0), spec=A40))


def test_racks_are_metered_and_each_becomes_a_budget() -> None:
    base = small_config(duration_s=20.0)
    racks = (
        PowerDomain(cap_w=6000.0, per_node_base_w=2000.0, pue=1.0, name="rack-a", nodes=(0,)),
        PowerDomain(cap_w=6000.0, per_node_base_w=2000.0, pue=1.0, name="rack-b", nodes=(1, 7)),
    )
    config = replace(base, racks=racks)
    assert config.domain_nodes(racks[1]) == (1,)  # node 7 does not exist in this fleet
    controller = PolicyController()
    result = run_fleet("racks", config, controller)
    assert set(result.domain_w) == {"site", "rack-a", "rack-b"}
    it_power = result.domain_w["rack-a"] + result.domain_w["rack-b"]
    assert np.allclose(it_power * 1.15, result.facility_w)  # racks partition the site; the site adds PUE
    assert controller.last is not None
    assert set(controller.last.budgets) == {"site", "rack-a", "rack-b"}
    assert controller.last.budgets["rack-a"].gpus == sum(g.node == "node-00" for g in result.gpus)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"physics_dt_s": 0.3}, "divide one second"),
        ({"control_period_s": 0.25}, "whole number"),
        ({"pools": ()}, "at least one pool"),
        ({"duration_s": 0.5}, "at least one second"),
    ],
)
def test_fleet_config_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(small_config(), **change)  # type: ignore[arg-type]


def test_domain_names_must_be_unique() -> None:
    rack = PowerDomain(cap_w=1.0, per_node_base_w=0.0, pue=1.0, name="site", nodes=(0,))
    with pytest.raises(ValueError, match="unique"):
        replace(small_config(), racks=(rack,))


def test_pue_patched_at_run_time_reaches_meter_and_policy() -> None:
    base = small_config(duration_s=20.0)
    site = replace(base.site, pue_schedule=((5.0, 1.15), (10.0, 1.5)))
    assert list(site.pue_at(np.array([0.0, 7.5, 15.0]))) == pytest.approx([1.15, 1.325, 1.5])
    controller = PolicyController()
    result = run_fleet("heat", replace(base, site=site), controller)
    it_power = result.gpu_w + 2 * 2000.0
    assert result.facility_w[2] == pytest.approx(it_power[2] * 1.15)
    assert result.facility_w[15] == pytest.approx(it_power[15] * 1.5)
    assert controller.last is not None
    report = controller.last.budgets["site"]
    assert report.non_gpu_w == pytest.approx(report.facility_draw_w - report.gpu_draw_w)
    assert report.facility_draw_w == pytest.approx((report.gpu_draw_w + 2 * 2000.0) * 1.5)


def test_policy_run_is_deterministic() -> None:
    a = run_fleet("a", small_config(duration_s=20.0), PolicyController())
    b = run_fleet("b", small_config(duration_s=20.0), PolicyController())
    assert np.array_equal(a.facility_w, b.facility_w)
    assert np.array_equal(a.limited_gpus, b.limited_gpus)


def _policy_after_one_tick(envelopes: bool) -> tuple[PolicyController, list[GpuInfo], FloatArray]:
    """A PolicyController on the small fleet under a tight cap, after one decision with calm readings."""
    config = small_config(duration_s=10.0)
    config = replace(config, site=replace(config.site, cap_w=config.site.cap_w * 0.8))
    gpus = layout(config)
    controller = PolicyController(envelopes=envelopes)
    controller.setup(config, gpus)
    power = np.array([100.0 if g.tier is not LatencyTier.TOLERANT else 690.0 for g in gpus])
    limits = controller.tick(Readings(now_s=1.0, power_w=power, enforced_limit_w=np.full(len(gpus), 700.0)))
    assert limits is not None
    return controller, gpus, power


def test_envelope_takes_a_critical_burst_from_tolerant_gpus_on_the_same_node() -> None:
    controller, gpus, power = _policy_after_one_tick(envelopes=True)
    calm = controller.fast_tick(power)
    assert calm is not None
    burst = np.array([700.0 if g.tier is LatencyTier.CRITICAL else p for g, p in zip(gpus, power, strict=True)])
    squeezed = controller.fast_tick(burst)
    assert squeezed is not None
    assert controller.last is not None and controller.last.envelopes
    for node, envelope in controller.last.envelopes.items():
        on_node = [i for i, g in enumerate(gpus) if g.node == node]
        flexible = [i for i in on_node if gpus[i].tier is LatencyTier.TOLERANT]
        protected = [i for i in on_node if gpus[i].tier is not LatencyTier.TOLERANT]
        at_floor = all(squeezed[i] <= (gpus[i].floor_w or 200.0) + 1e-6 for i in flexible)
        # Within one fast tick the node is back inside its envelope (unless its tolerant GPUs hit their floors).
        assert at_floor or burst[protected].sum() + squeezed[flexible].sum() <= envelope.watts + 1e-6
        for i in protected:
            assert squeezed[i] == calm[i]  # protected GPUs are never limited by the envelope
    assert np.any(squeezed < calm - 1.0)
    again = controller.fast_tick(power)  # the burst ends: the watts go back at once
    assert again is not None and np.array_equal(again, calm)


def test_without_envelopes_limits_move_only_at_decisions() -> None:
    controller, _, power = _policy_after_one_tick(envelopes=False)
    assert controller.fast_tick(power) is None


def test_envelopes_keep_the_site_under_target_where_a_1hz_loop_goes_over() -> None:
    config = small_config(duration_s=300.0)
    tight = replace(config, site=replace(config.site, cap_w=config.site.cap_w * 0.8))
    slow = run_fleet("1hz", tight, PolicyController(envelopes=False))
    fast = run_fleet("envelopes", tight, PolicyController(envelopes=True))
    cap = tight.site.cap_w
    assert np.count_nonzero(fast.facility_w > cap) < np.count_nonzero(slow.facility_w > cap)
    assert not fast.critical_limited_while_tolerant_above_floor
