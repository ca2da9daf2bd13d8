"""The fitted curves reproduce the measured points they were fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.sim import calibration

# Median throughput kept across the Zeus A40 workloads (docs/simulator.md, /work/shared/data/SOURCES.md).
ZEUS_FIGURES = {250: 0.989, 225: 0.985, 200: 0.956, 175: 0.929, 150: 0.751}


@pytest.mark.parametrize(("limit_w", "kept"), sorted(ZEUS_FIGURES.items()))
def test_compute_bound_curve_reproduces_the_zeus_sweep(limit_w: int, kept: float) -> None:
    assert calibration.compute_bound_curve().at(limit_w / 300) == pytest.approx(kept, abs=0.0006)


def test_compute_bound_curve_passes_through_every_source_point() -> None:
    curve = calibration.compute_bound_curve()
    points = calibration.zeus_points()
    assert len(points) == 9  # 100..300 W in 25 W steps
    for x, y in points:
        assert curve.at(x) == pytest.approx(min(1.0, y))
    assert curve.at(1.0) == 1.0 and curve.at(1.5) == 1.0
    assert curve.at(0.0) == 0.0


def test_curves_are_monotonic_and_memory_bound_loses_less() -> None:
    xs = np.linspace(0.05, 1.0, 200)
    compute = calibration.compute_bound_curve()(xs)
    memory = calibration.memory_bound_curve()(xs)
    assert np.all(np.diff(compute) >= 0) and np.all(np.diff(memory) >= 0)
    assert np.all(memory >= compute)
    loss_c = 1 - calibration.compute_bound_curve().at(0.5)
    loss_m = 1 - calibration.memory_bound_curve().at(0.5)
    assert loss_m == pytest.approx(calibration.MEMORY_BOUND_LOSS_SHARE * loss_c)


def test_serving_profile_reproduces_the_splitwise_medians() -> None:
    profile = calibration.serving_profile()
    assert profile.tensor_parallel == 2
    # Medians of the llama2-70b DGX-H100 TP2 rows (prompt 8192: ~1.34 s; decode batch 1: ~37 ms).
    assert profile.prefill_time_s(np.array([8192.0]))[0] == pytest.approx(1.3398, abs=1e-3)
    assert profile.decode_step_time_s(np.array([1.0]))[0] == pytest.approx(0.0371, abs=1e-3)
    assert profile.max_batch == 32  # the batch-64 rows (faster than batch 32) are dropped as an artefact
    steps = profile.decode_step_time_s(np.arange(1.0, 33.0))
    assert np.all(np.diff(steps) >= 0)


def test_prefill_extrapolates_linearly_beyond_the_profile() -> None:
    profile = calibration.serving_profile()
    t = profile.prefill_time_s(np.array([8192.0, 16384.0, 24576.0]))
    assert t[2] - t[1] == pytest.approx(t[1] - t[0])
    assert t[1] > t[0]


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no profile"):
        calibration.serving_profile("gpt-9", "h100-80gb", 2)
