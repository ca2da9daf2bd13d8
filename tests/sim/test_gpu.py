"""The simulated GPU behaves like NVML reports a real one: lag, clipping, thermals, constraints, energy."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from wattwise.sim import calibration
from wattwise.sim.calibration import FloatArray
from wattwise.sim.gpu import (
    A40,
    A100_SXM,
    CLOCK_EVENT_APPLICATIONS_CLOCKS,
    CLOCK_EVENT_GPU_IDLE,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
    GPU_SPECS,
    H100_SXM,
    GpuBank,
    GpuSpec,
    SimulatedGpu,
    SmallGpuBank,
)


def run(gpu: SimulatedGpu, seconds: float, dt: float = 0.1) -> None:
    for _ in range(round(seconds / dt)):
        gpu.step(dt)


def test_specs_are_registered_by_short_name() -> None:
    assert GPU_SPECS == {"h100": H100_SXM, "a100": A100_SXM, "a40": A40}
    assert H100_SXM.idle_w == 75.0 and H100_SXM.prefill_w == 700.0 and H100_SXM.decode_w == 380.0


def test_idle_gpu_draws_idle_power_and_reports_idle() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    run(gpu, 2.0)
    assert gpu.power_w == pytest.approx(75.0)
    assert gpu.clock_event_reasons & CLOCK_EVENT_GPU_IDLE
    assert gpu.utilization_gpu == 0
    assert gpu.sm_clock_mhz == H100_SXM.idle_sm_clock_mhz


def test_power_follows_load_with_a_short_lag() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_load(1.0, compute_fraction=1.0)
    gpu.step(0.1)
    first = gpu.power_w
    assert 75.0 < first < 700.0 * 0.6  # not there yet after 100 ms
    # After one lag constant the gap to the target has shrunk by 1/e.
    gpu2 = SimulatedGpu(H100_SXM, 1)
    gpu2.set_load(1.0, compute_fraction=1.0)
    gpu2.step(H100_SXM.power_lag_s)
    assert gpu2.power_w == pytest.approx(700 - (700 - 75) / math.e, rel=1e-6)
    run(gpu, 2.0)
    assert gpu.power_w == pytest.approx(700.0, rel=1e-3)


def test_decode_draws_less_than_prefill() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_load(1.0, compute_fraction=0.0)
    run(gpu, 3.0)
    assert gpu.power_w == pytest.approx(380.0, rel=1e-3)
    gpu.set_load(0.5, compute_fraction=1.0)
    run(gpu, 3.0)
    assert gpu.power_w == pytest.approx(75 + 0.5 * (700 - 75), rel=1e-3)


def test_limit_clips_power_at_once_and_costs_compute_bound_throughput() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_load(1.0, compute_fraction=1.0)
    run(gpu, 3.0)
    gpu.set_power_limit(350.0)
    gpu.step(0.1)
    assert gpu.power_w == 350.0
    assert gpu.power_limit_w == 350.0
    assert gpu.clock_event_reasons & CLOCK_EVENT_SW_POWER_CAP
    assert gpu.throughput_factor == pytest.approx(calibration.compute_bound_curve().at(0.5), rel=1e-3)
    assert gpu.sm_clock_mhz < H100_SXM.max_sm_clock_mhz


def test_memory_bound_work_loses_much_less_under_the_same_limit() -> None:
    prefill, decode = SimulatedGpu(H100_SXM, 0), SimulatedGpu(H100_SXM, 1)
    prefill.set_load(1.0, 1.0)
    decode.set_load(1.0, 0.0)
    for gpu in (prefill, decode):
        run(gpu, 3.0)
        gpu.set_power_limit(0.7 * 700)  # Splitwise's "H100 at 70% power"
        gpu.step(0.1)
    assert decode.throughput_factor == 1.0  # decode draws 380 W: the limit does not bind
    assert prefill.throughput_factor < 0.99
    decode.set_power_limit(200.0)  # now it binds for decode too
    decode.step(0.1)
    compute_loss = 1 - calibration.compute_bound_curve().at(200 / 380)
    assert 0 < 1 - decode.throughput_factor < compute_loss


def test_unlimited_gpu_keeps_full_throughput() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_load(0.8, 0.7)
    run(gpu, 2.0)
    assert gpu.throughput_factor == 1.0
    assert not gpu.clock_event_reasons & CLOCK_EVENT_SW_POWER_CAP


@pytest.mark.parametrize("watts", [199.9, 700.1, 0.0, -5.0])
def test_limit_outside_nvml_range_raises(watts: float) -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    with pytest.raises(ValueError, match="outside"):
        gpu.set_power_limit(watts)
    assert gpu.power_limit_w == H100_SXM.default_limit_w


def test_limit_bounds_are_inclusive() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_power_limit(200.0)
    gpu.set_power_limit(700.0)
    assert gpu.power_limit_w == 700.0


def test_thermal_model_approaches_steady_state_first_order() -> None:
    spec = H100_SXM
    gpu = SimulatedGpu(spec, 0, ambient_c=25.0)
    gpu.set_load(1.0, 1.0)
    run(gpu, 2.0)  # power settled at 700 W; temperature barely moved
    start = gpu.temperature_c
    steady = 25.0 + spec.thermal_resistance_c_per_w * 700.0
    run(gpu, spec.thermal_tau_s)
    # One time constant closes ~63% of the gap (minus the short power ramp at the start).
    closed = (gpu.temperature_c - start) / (steady - start)
    assert 0.60 < closed < 0.64
    run(gpu, 8 * spec.thermal_tau_s)
    assert gpu.temperature_c == pytest.approx(steady, abs=0.05)
    assert gpu.memory_temperature_c > gpu.temperature_c
    gpu.set_load(0.0)
    run(gpu, 8 * spec.thermal_tau_s)
    assert gpu.temperature_c == pytest.approx(25.0 + spec.thermal_resistance_c_per_w * 75.0, abs=0.05)


def test_hot_room_triggers_thermal_slowdown() -> None:
    gpu = SimulatedGpu(H100_SXM, 0, ambient_c=45.0)
    gpu.set_load(1.0, 1.0)
    run(gpu, 300.0, dt=1.0)
    assert gpu.clock_event_reasons & CLOCK_EVENT_SW_THERMAL_SLOWDOWN
    assert gpu.throughput_factor < 1.0


def test_energy_is_monotonic_and_integrates_power() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    last = gpu.energy_j
    for i in range(200):
        gpu.set_load((i % 7) / 6, (i % 3) / 2)
        if i == 100:
            gpu.set_power_limit(300.0)
        gpu.step(0.1)
        assert gpu.energy_j > last
        last = gpu.energy_j
    idle = SimulatedGpu(H100_SXM, 1)
    run(idle, 10.0)
    assert idle.energy_j == pytest.approx(750.0)


def test_locked_clocks_save_power_and_spare_memory_bound_work() -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    gpu.set_load(1.0, 0.0)
    run(gpu, 3.0)
    unlocked = gpu.power_w
    gpu.set_locked_clocks(210, 1400)
    run(gpu, 3.0)
    assert gpu.power_w < unlocked
    assert gpu.throughput_factor == 1.0  # 1400/1980 = 71% of the clock: still enough for decode
    assert gpu.clock_event_reasons & CLOCK_EVENT_APPLICATIONS_CLOCKS
    assert gpu.sm_clock_mhz <= 1400
    gpu.reset_locked_clocks()
    run(gpu, 3.0)
    assert gpu.power_w == pytest.approx(unlocked, rel=1e-3)


@pytest.mark.parametrize(("lo", "hi"), [(100, 1400), (1500, 1400), (210, 2500)])
def test_locked_clocks_outside_range_raise(lo: int, hi: int) -> None:
    gpu = SimulatedGpu(H100_SXM, 0)
    with pytest.raises(ValueError):
        gpu.set_locked_clocks(lo, hi)


def test_uuid_is_nvml_shaped_and_deterministic() -> None:
    a, b, c = SimulatedGpu(H100_SXM, 3, seed=7), SimulatedGpu(H100_SXM, 3, seed=7), SimulatedGpu(H100_SXM, 4)
    assert a.uuid == b.uuid != c.uuid
    assert a.uuid.startswith("GPU-") and len(a.uuid) == 40
    assert SimulatedGpu(H100_SXM, 0, uuid="GPU-given").uuid == "GPU-given"


def test_set_load_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        SimulatedGpu(H100_SXM, 0).set_load(1.5)


def test_spec_validates_its_constraints() -> None:
    with pytest.raises(ValueError):
        GpuSpec(
            "bad",
            min_limit_w=300,
            max_limit_w=200,
            default_limit_w=250,
            idle_w=50,
            prefill_w=200,
            decode_w=100,
        )


def test_bank_matches_single_gpus_step_for_step() -> None:
    loads = [(0.0, 0.5), (1.0, 1.0), (0.6, 0.2), (1.0, 0.0)]
    limits = [700.0, 400.0, 250.0, 300.0]
    bank = GpuBank(H100_SXM, len(loads))
    singles = [SimulatedGpu(H100_SXM, i) for i in range(len(loads))]
    bank.set_load(np.array([u for u, _ in loads]), np.array([c for _, c in loads]))
    bank.set_power_limits(np.array(limits))
    for gpu, (u, c), lim in zip(singles, loads, limits, strict=True):
        gpu.set_load(u, c)
        gpu.set_power_limit(lim)
    for _ in range(50):
        bank.step(0.1)
        for gpu in singles:
            gpu.step(0.1)
    for i, gpu in enumerate(singles):
        assert bank.power_w[i] == pytest.approx(gpu.power_w)
        assert bank.throughput_factor[i] == pytest.approx(gpu.throughput_factor)
        assert bank.temperature_c[i] == pytest.approx(gpu.temperature_c)


def test_bank_rejects_out_of_range_limits_without_applying_any() -> None:
    bank = GpuBank(H100_SXM, 3)
    with pytest.raises(ValueError, match="outside"):
        bank.set_power_limits(np.array([300.0, 100.0, 300.0]))
    assert list(bank.power_limit_w) == [700.0, 700.0, 700.0]


class EagerBank:
    """The model as first written: every reading computed at every step. `GpuBank` must match it bit for bit."""

    def __init__(self, spec: GpuSpec, n: int, ambient_c: float = 25.0) -> None:
        self.spec, self.n, self.ambient_c = spec, n, ambient_c
        self.utilization, self.compute_fraction = np.zeros(n), np.full(n, 0.5)
        self.power_limit_w, self.clock_lock_ratio = np.full(n, spec.default_limit_w), np.ones(n)
        self.clocks_locked = np.zeros(n, dtype=bool)
        self.demand_w, self.power_w, self.energy_j = np.full(n, spec.idle_w), np.full(n, spec.idle_w), np.zeros(n)
        self.temperature_c = np.full(n, ambient_c + spec.thermal_resistance_c_per_w * spec.idle_w)
        self.memory_temperature_c = np.full(n, ambient_c + spec.memory_thermal_resistance_c_per_w * spec.idle_w)
        self.throughput_factor = np.ones(n)
        self.sm_clock_mhz = np.full(n, float(spec.idle_sm_clock_mhz))
        self.clock_event_reasons = np.full(n, CLOCK_EVENT_GPU_IDLE, dtype=np.int64)

    def set_load(self, utilization: FloatArray, compute_fraction: FloatArray) -> None:
        self.utilization = np.clip(np.asarray(utilization, dtype=np.float64), 0.0, 1.0)
        self.compute_fraction = np.clip(np.asarray(compute_fraction, dtype=np.float64), 0.0, 1.0)

    def set_power_limit(self, index: int, watts: float) -> None:
        self.power_limit_w = self.power_limit_w.copy()
        self.power_limit_w[index] = watts

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        self.clock_lock_ratio, self.clocks_locked = self.clock_lock_ratio.copy(), self.clocks_locked.copy()
        self.clock_lock_ratio[index], self.clocks_locked[index] = max_mhz / self.spec.max_sm_clock_mhz, True

    def reset_locked_clocks(self, index: int) -> None:
        self.clock_lock_ratio, self.clocks_locked = self.clock_lock_ratio.copy(), self.clocks_locked.copy()
        self.clock_lock_ratio[index], self.clocks_locked[index] = 1.0, False

    def step(self, dt_s: float) -> None:
        spec = self.spec
        util, cf, lock = self.utilization, self.compute_fraction, self.clock_lock_ratio
        hot = self.temperature_c >= spec.sw_slowdown_c
        thermal = np.where(hot, 0.9, 1.0)
        memory_clock_power = (1.0 - 0.6) * lock + 0.6
        dynamic = util * (
            cf * (spec.prefill_w - spec.idle_w) * lock**2
            + (1.0 - cf) * (spec.decode_w - spec.idle_w) * memory_clock_power
        )
        target = spec.idle_w + dynamic * thermal
        self.demand_w = target + (self.demand_w - target) * np.exp(-dt_s / spec.power_lag_s)
        capped = self.demand_w > self.power_limit_w
        self.power_w = np.minimum(self.demand_w, self.power_limit_w)
        self.energy_j = self.energy_j + self.power_w * dt_s
        relative = np.where(capped, self.power_limit_w / self.demand_w, 1.0)
        compute_speed = calibration.compute_bound_curve()(relative) * lock
        memory_speed = calibration.memory_bound_curve()(relative) * np.minimum(1.0, lock / 0.6)
        mixed = 1.0 / (cf / np.maximum(compute_speed, 1e-9) + (1.0 - cf) / np.maximum(memory_speed, 1e-9))
        self.throughput_factor = np.clip(mixed * thermal, 0.0, 1.0)
        decay = np.exp(-dt_s / spec.thermal_tau_s)
        core_target = self.ambient_c + spec.thermal_resistance_c_per_w * self.power_w
        mem_target = self.ambient_c + spec.memory_thermal_resistance_c_per_w * self.power_w
        self.temperature_c = core_target + (self.temperature_c - core_target) * decay
        self.memory_temperature_c = mem_target + (self.memory_temperature_c - mem_target) * decay
        dyn_allowed = np.maximum(self.power_w - spec.idle_w, 0.0)
        dyn_wanted = np.maximum(self.demand_w - spec.idle_w, 1e-9)
        clock_ratio = np.sqrt(np.minimum(dyn_allowed / dyn_wanted, 1.0)) * lock * thermal
        busy_clock = np.maximum(spec.max_sm_clock_mhz * clock_ratio, spec.min_sm_clock_mhz)
        busy = util > 0.0
        self.sm_clock_mhz = np.where(busy, busy_clock, float(spec.idle_sm_clock_mhz))
        reasons = np.zeros(self.n, dtype=np.int64)
        reasons |= np.where(busy, 0, CLOCK_EVENT_GPU_IDLE)
        reasons |= np.where(busy & capped, CLOCK_EVENT_SW_POWER_CAP, 0)
        reasons |= np.where(busy & self.clocks_locked, CLOCK_EVENT_APPLICATIONS_CLOCKS, 0)
        reasons |= np.where(hot, CLOCK_EVENT_SW_THERMAL_SLOWDOWN, 0)
        reasons |= np.where(self.temperature_c >= spec.hw_slowdown_c, CLOCK_EVENT_HW_SLOWDOWN, 0)
        self.clock_event_reasons = reasons


READINGS = (
    "power_w",
    "demand_w",
    "energy_j",
    "power_limit_w",
    "temperature_c",
    "memory_temperature_c",
    "throughput_factor",
    "sm_clock_mhz",
    "clock_event_reasons",
    "clocks_locked",
)


Bank = GpuBank | SmallGpuBank | EagerBank


def drive(banks: list[Bank], spec: GpuSpec, n: int, steps: int = 400) -> Iterator[int]:
    """A random run: loads, steps of varying length, and limits and clocks changed between a step and its reads;
    yields after each step whose readings the caller should compare (not every one: some are never read)."""
    rng = np.random.default_rng(7)
    for k in range(steps):
        util = np.clip(rng.uniform(-0.2, 1.5, n), 0.0, 1.0) * (rng.random(n) > 0.2)
        util[0] = -0.0 if k % 7 == 0 else util[0]  # np.clip keeps the sign of zero
        cf = rng.uniform(-0.1, 1.0, n)
        dt = float(rng.choice([0.1, 0.1, 0.05, rng.uniform(0.005, 2.0)]))
        for bank in banks:
            bank.set_load(util, cf)
            bank.step(dt)
        if rng.random() < 0.5:  # after the step, before it is read: must not show in its readings
            i, watts = int(rng.integers(n)), float(rng.uniform(spec.min_limit_w, spec.max_limit_w))
            for bank in banks:
                bank.set_power_limit(i, watts)
        if rng.random() < 0.1:
            i, top = int(rng.integers(n)), int(rng.integers(spec.min_sm_clock_mhz, spec.max_sm_clock_mhz + 1))
            for bank in banks:
                bank.set_locked_clocks(i, spec.min_sm_clock_mhz, top)
        elif rng.random() < 0.05:
            i = int(rng.integers(n))
            for bank in banks:
                bank.reset_locked_clocks(i)
        if k % 3 == 0 or k > steps - 10:
            yield k


EVERY_REASON = (
    CLOCK_EVENT_GPU_IDLE
    | CLOCK_EVENT_SW_POWER_CAP
    | CLOCK_EVENT_APPLICATIONS_CLOCKS
    | CLOCK_EVENT_SW_THERMAL_SLOWDOWN
    | CLOCK_EVENT_HW_SLOWDOWN
)


def same_bits(ours: object, theirs: object) -> bool:
    a, b = np.asarray(ours), np.asarray(theirs)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("spec", [H100_SXM, A100_SXM, A40], ids=lambda s: s.name)
def test_bank_is_bit_identical_to_the_eager_model_whatever_is_read_when(spec: GpuSpec) -> None:
    """Readings derived from a step are computed when first read: changing the limits, clocks or load after a step
    and reading later (or never) must give what computing them at the step gave, to the bit."""
    n = 6
    bank, eager = GpuBank(spec, n, ambient_c=80.0), EagerBank(spec, n, ambient_c=80.0)  # a hot room: throttles too
    seen = 0
    for k in drive([bank, eager], spec, n):
        for name in READINGS:
            assert same_bits(getattr(bank, name), getattr(eager, name)), (k, name)
        seen |= int(np.bitwise_or.reduce(bank.clock_event_reasons))
    assert seen == EVERY_REASON  # every branch of the model was taken


SMALL_READINGS = (*READINGS, "utilization", "compute_fraction", "utilization_memory")


@pytest.mark.parametrize("spec", [H100_SXM, A100_SXM, A40], ids=lambda s: s.name)
def test_small_bank_is_gpu_banks_arithmetic_to_the_bit(spec: GpuSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """With numpy's exp for its decays, a SmallGpuBank is a GpuBank to the bit: the same operations in the same
    order, whatever the step lengths and whenever limits and clocks change."""
    monkeypatch.setattr(math, "exp", lambda x: float(np.exp(x)))
    n = 6
    bank, small = GpuBank(spec, n, ambient_c=80.0), SmallGpuBank(spec, n, ambient_c=80.0)
    for name in SMALL_READINGS:
        assert same_bits(getattr(small, name), getattr(bank, name)), ("before any step", name)
    seen = 0
    for k in drive([bank, small], spec, n):
        for name in SMALL_READINGS:
            assert same_bits(getattr(small, name), getattr(bank, name)), (k, name)
        seen |= int(np.bitwise_or.reduce(bank.clock_event_reasons))
    assert seen == EVERY_REASON


@pytest.mark.parametrize("spec", [H100_SXM, A100_SXM, A40], ids=lambda s: s.name)
def test_small_bank_agrees_with_gpu_bank_with_maths_exp(spec: GpuSpec) -> None:
    """As the agent runs it: math.exp differs from numpy's in the last bit now and then, nothing more."""
    n = 6
    bank, small = GpuBank(spec, n, ambient_c=80.0), SmallGpuBank(spec, n, ambient_c=80.0)
    for k in drive([bank, small], spec, n):
        for name in SMALL_READINGS:
            ours, theirs = np.asarray(getattr(small, name)), np.asarray(getattr(bank, name))
            assert ours.dtype == theirs.dtype, (k, name)
            if ours.dtype == np.float64:
                np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=f"{k} {name}")
            else:  # clock events, locked clocks: the same thresholds crossed
                assert ours.tolist() == theirs.tolist(), (k, name)
    with pytest.raises(ValueError, match="outside"):
        small.set_power_limit(0, spec.max_limit_w + 1)
    with pytest.raises(ValueError, match="outside"):
        small.set_locked_clocks(0, spec.min_sm_clock_mhz, spec.max_sm_clock_mhz + 1)
    with pytest.raises(ValueError, match="positive"):
        small.step(0.0)
    with pytest.raises(ValueError, match="expected 6 loads"):
        small.set_load([0.5], [0.5])


def test_bank_inputs_are_read_only() -> None:
    """A step's readings are computed from its inputs later: the inputs cannot change in place under them."""
    bank = GpuBank(H100_SXM, 2)
    bank.step(0.1)
    for name in ("power_limit_w", "utilization", "clock_lock_ratio", "clocks_locked", "power_w", "temperature_c"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(bank, name)[0] = 1
