"""Named scenarios for one tick of the control loop, with exact expectations."""

from __future__ import annotations

import dataclasses

import pytest

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode, EmergencyPolicy
from wattwise.policy import BudgetState, GpuLimits, GpuState, decide
from wattwise.policy.waterfill import water_fill

H100 = GpuLimits(min_w=200.0, max_w=700.0, default_w=700.0)


def gpu(uuid: str, tier: LatencyTier, power: float | None, limit: float = 700.0, **kw: object) -> GpuState:
    return GpuState(uuid=uuid, node="n0", tier=tier, limits=H100, enforced_limit_w=limit, power_w=power, **kw)  # type: ignore[arg-type]


def budget(cap: float, uuids: list[str], **kw: object) -> BudgetState:
    return BudgetState(name=str(kw.pop("name", "site")), cap_w=cap, gpu_uuids=tuple(uuids), node_count=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lows", "highs", "total", "expected"),
    [
        ([0, 0, 0], [1, 5, 10], 9, [1, 4, 4]),
        ([100, 100, 300], [700, 200, 700], 1000, [400, 200, 400]),
        ([100, 100], [700, 700], 50, [100, 100]),  # below the lows: everyone at their low
        ([100, 100], [700, 700], 5000, [700, 700]),  # above the highs: everyone at their high
        ([], [], 10, []),
    ],
    ids=["small-need-served", "mixed-bounds", "below-lows", "above-highs", "empty"],
)
def test_water_fill(lows: list[float], highs: list[float], total: float, expected: list[float]) -> None:
    assert water_fill(lows, highs, total) == pytest.approx(expected)


def test_plenty_of_power_limits_nobody() -> None:
    gpus = {u: gpu(u, LatencyTier.TOLERANT, 400.0) for u in ("a", "b")}
    d = decide([budget(10_000, ["a", "b"])], gpus)
    assert d.limits == {"a": 700.0, "b": 700.0}
    assert d.budgets["site"].gpus_limited == 0


def test_over_target_squeezes_tolerant_and_spares_critical() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 650.0),
        "t1": gpu("t1", LatencyTier.TOLERANT, 690.0),
        "t2": gpu("t2", LatencyTier.TOLERANT, 690.0),
    }
    b = budget(1800, list(gpus))  # draw 2030 W > 0.98 x 1800
    d = decide([b], gpus)
    assert d.limits["c"] == 700.0
    assert d.limits["t1"] == d.limits["t2"] < 690.0
    report = d.budgets["site"]
    assert report.over_cap and report.over_target and report.critical_limited == 0 and report.gpus_limited == 2


def test_limits_come_back_on_the_ramp() -> None:
    gpus = {"t": gpu("t", LatencyTier.TOLERANT, 150.0, limit=300.0)}
    b = budget(5000, ["t"], ramp_w_per_s=20.0)
    d = decide([b], gpus)
    assert d.limits["t"] == 320.0
    d = decide([b], {"t": dataclasses.replace(gpus["t"], enforced_limit_w=320.0)}, d)
    assert d.limits["t"] == 340.0


def test_stale_gpu_counts_at_its_limit_and_keeps_it() -> None:
    gpus = {"s": gpu("s", LatencyTier.TOLERANT, None, limit=650.0), "t": gpu("t", LatencyTier.TOLERANT, 100.0)}
    d = decide([budget(1000, ["s", "t"])], gpus)
    report = d.budgets["site"]
    assert report.gpu_draw_w == 750.0 and report.stale_gpus == 1
    assert "s" not in d.limits  # nothing decided before: nothing to hold
    assert d.limits["t"] <= 0.95 * 1000 - 650.0 + 1e-9


def test_monitor_mode_recommends_but_does_not_actuate() -> None:
    gpus = {"t": gpu("t", LatencyTier.TOLERANT, 690.0)}
    d = decide([budget(500, ["t"], mode=BudgetMode.MONITOR)], gpus)
    assert d.limits == {}
    assert d.recommended["t"] < 700.0


def test_gpu_in_two_budgets_gets_the_lower_limit() -> None:
    gpus = {u: gpu(u, LatencyTier.TOLERANT, 690.0) for u in ("a", "b", "c")}
    rack = budget(1000, ["a", "b"], name="rack")
    site = budget(3000, ["a", "b", "c"], name="site")
    d = decide([rack, site], gpus)
    assert d.limits["a"] == d.limits["b"] == pytest.approx(0.95 * 1000 / 2)
    # The site re-shares what the rack's tighter limits left unused: c gets the rest, up to its maximum.
    assert d.limits["c"] == 700.0


def test_infeasible_floors_hold_floors_and_say_so() -> None:
    gpus = {u: gpu(u, LatencyTier.TOLERANT, 690.0, floor_w=400.0) for u in ("a", "b")}
    d = decide([budget(600, ["a", "b"])], gpus)
    assert d.budgets["site"].feasible is False
    assert d.limits == {"a": 400.0, "b": 400.0}


def test_below_floors_policy_keeps_the_cap_tolerant_first() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 690.0, floor_w=650.0),
        "t": gpu("t", LatencyTier.TOLERANT, 690.0, floor_w=450.0),
    }
    d = decide([budget(1000 / 0.95, ["c", "t"], emergency_policy=EmergencyPolicy.BELOW_FLOORS)], gpus)
    assert d.budgets["site"].feasible is False
    # 100 W too many: taken from the tolerant GPU's floor; the critical GPU keeps its floor.
    assert d.limits == {"c": pytest.approx(650.0), "t": pytest.approx(350.0)}


def test_higher_priority_served_first_within_tier() -> None:
    gpus = {
        "hi": gpu("hi", LatencyTier.TOLERANT, 690.0, priority=5),
        "lo": gpu("lo", LatencyTier.TOLERANT, 690.0, priority=0),
    }
    d = decide([budget(1000 / 0.95, ["hi", "lo"])], gpus)
    assert d.limits["hi"] == 700.0
    assert d.limits["lo"] == pytest.approx(300.0)


def test_critical_reservation_respects_expected_power() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 80.0, expected_w=600.0),
        "t": gpu("t", LatencyTier.TOLERANT, 690.0),
    }
    d = decide([budget(1000 / 0.95, ["c", "t"])], gpus)
    assert d.demand_w["c"] == 600.0
    assert d.limits["t"] == pytest.approx(400.0)


def test_non_gpu_share_and_pue_shrink_the_gpu_allowance() -> None:
    b = BudgetState(name="site", cap_w=1150.0, gpu_uuids=("t",), node_count=2, per_node_base_w=100.0, pue=1.15)
    assert b.gpu_allowance_w() == pytest.approx(0.95 * 1000.0 - 200.0)
    d = decide([b], {"t": gpu("t", LatencyTier.TOLERANT, 690.0)})
    assert d.limits["t"] == 700.0  # 750 W allowed: the GPU's maximum fits
    assert d.budgets["site"].facility_draw_w == pytest.approx((690.0 + 200.0) * 1.15)


def test_idle_standard_gpu_does_not_pin_tolerant_work_to_floors() -> None:
    """Regression (headline scenario): an idle standard GPU's limit sits at its demand, which does not bind."""
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 75.0, expected_w=600.0, floor_w=630.0),
        "s": gpu("s", LatencyTier.STANDARD, 75.0, floor_w=350.0),
        "t": gpu("t", LatencyTier.TOLERANT, 200.0, limit=200.0, floor_w=200.0),
    }
    d = decide([budget(1700, list(gpus), ramp_w_per_s=100.0)], gpus)
    assert d.limits["c"] == 700.0
    assert d.limits["t"] == 300.0  # raised on the ramp, not held at its floor


def test_critical_gpu_rises_at_once_while_tolerant_ramps() -> None:
    """A critical pod landing on a GPU that tolerant work left low gets its power in the same tick."""
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 300.0, limit=300.0),
        "t": gpu("t", LatencyTier.TOLERANT, 100.0, limit=300.0),
    }
    d = decide([budget(5000, list(gpus), ramp_w_per_s=20.0)], gpus)
    assert d.limits["c"] == 700.0
    assert d.limits["t"] == 320.0


def test_critical_pool_holds_the_peak_of_the_sum() -> None:
    """After a burst, a budget keeps the critical pool's summed peak reserved, decaying per critical GPU."""
    busy = {
        "c1": gpu("c1", LatencyTier.CRITICAL, 680.0),
        "c2": gpu("c2", LatencyTier.CRITICAL, 680.0),
        "t": gpu("t", LatencyTier.TOLERANT, 690.0, limit=200.0),
    }
    b = budget(2000 / 0.95, list(busy), ramp_w_per_s=1000.0)
    d = decide([b], busy)
    peak = d.critical_hold_w["site"]
    assert peak == pytest.approx(2 * 700.0)
    quiet = {u: dataclasses.replace(g, power_w=80.0 if u != "t" else 200.0) for u, g in busy.items()}
    d = decide([b], quiet, d)
    assert d.critical_hold_w["site"] == pytest.approx(peak - 25.0 * 2)
    # The tolerant GPU gets what the held pool leaves, not what the critical GPUs draw this second.
    assert d.limits["t"] == pytest.approx(2000.0 - (peak - 50.0))
