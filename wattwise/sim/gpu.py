"""Simulated GPUs that behave like NVML reports real ones: power, limit, energy, temperature, clocks.

`GpuBank` holds the physics of many GPUs of one model as numpy arrays, so the fleet simulator steps a whole
site at once; `SimulatedGpu` is its one-GPU view, so a single GPU and a fleet behave the same by construction.
`SmallGpuBank` is the same physics in Python floats for the node agent's `sim` backend (a node's few GPUs,
stepped 10 times a second, where numpy's per-call overhead would be most of the cost), held to `GpuBank` by
tests (tests/sim/test_gpu.py).

The model, per GPU and per step:
- Demand: the power the GPU would draw unlimited = idle + utilization x (the compute-bound (prefill) and
  memory-bound (decode) dynamic power, mixed by `compute_fraction`), lowered by locked clocks and thermal
  slowdown. Drawn power follows demand with a first-order lag (`power_lag_s`).
- The power limit clips drawn power at once (NVML's power capping reacts within milliseconds, far faster
  than a simulation step); `throughput_factor` is then what the work keeps at limit / demand, from the
  curves fitted on the Zeus sweep (`calibration.py`): compute-bound work loses along the measured curve,
  memory-bound work much less.
- Temperature: first-order thermal model, T -> ambient + R x P with time constant `thermal_tau_s`.
- NVML constraints: a limit outside [min, max] raises ValueError, as nvmlDeviceSetPowerManagementLimit fails.
"""

from __future__ import annotations

import math
import random
import uuid as uuid_lib
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from wattwise.sim import calibration
from wattwise.sim.calibration import FloatArray

# NVML clock event (throttle) reason bits (nvml.h, nvmlClocksEventReason*).
CLOCK_EVENT_GPU_IDLE = 0x1
CLOCK_EVENT_APPLICATIONS_CLOCKS = 0x2
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SW_THERMAL_SLOWDOWN = 0x20

#: Memory-bound work keeps full speed until the SM clock falls below this share of its maximum.
_MEMORY_BOUND_CLOCK_NEED = 0.6
#: Throughput and dynamic power kept while the GPU throttles for heat.
_THERMAL_SLOWDOWN_FACTOR = 0.9


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """A GPU model's physics and NVML constraints."""

    name: str  # as NVML reports it
    min_limit_w: float
    max_limit_w: float
    default_limit_w: float
    idle_w: float
    prefill_w: float  # unlimited draw, fully busy with compute-bound work
    decode_w: float  # unlimited draw, fully busy with memory-bound work
    power_lag_s: float = 0.2
    thermal_resistance_c_per_w: float = 0.065
    memory_thermal_resistance_c_per_w: float = 0.075
    thermal_tau_s: float = 40.0
    sw_slowdown_c: float = 87.0
    hw_slowdown_c: float = 92.0
    max_sm_clock_mhz: int = 1980
    min_sm_clock_mhz: int = 210
    idle_sm_clock_mhz: int = 345
    mem_clock_mhz: int = 2619
    #: `hardware` of this GPU's rows in the Splitwise perf model (None: no serving profile for this GPU).
    serving_hardware: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_limit_w <= self.default_limit_w <= self.max_limit_w:
            raise ValueError(f"{self.name}: need 0 < min <= default <= max limit")
        if not 0 <= self.idle_w <= min(self.prefill_w, self.decode_w) <= self.max_limit_w:
            raise ValueError(f"{self.name}: need idle <= prefill/decode draw <= max limit")


# Idle, prefill and decode draw: Splitwise's power model (H100-80GB, A100-80GB); limits: NVML's ranges.
H100_SXM = GpuSpec(
    name="NVIDIA H100 80GB HBM3",
    min_limit_w=200.0,
    max_limit_w=700.0,
    default_limit_w=700.0,
    idle_w=75.0,
    prefill_w=700.0,
    decode_w=380.0,
    serving_hardware="h100-80gb",
)
A100_SXM = GpuSpec(
    name="NVIDIA A100-SXM4-80GB",
    min_limit_w=100.0,
    max_limit_w=400.0,
    default_limit_w=400.0,
    idle_w=63.0,
    prefill_w=400.0,
    decode_w=250.0,
    thermal_resistance_c_per_w=0.11,
    memory_thermal_resistance_c_per_w=0.12,
    max_sm_clock_mhz=1410,
    mem_clock_mhz=1593,
    serving_hardware="a100-80gb",
)
# A40: the Zeus sweep's GPU (100-300 W); decode share scaled like the H100's (380/700).
A40 = GpuSpec(
    name="NVIDIA A40",
    min_limit_w=100.0,
    max_limit_w=300.0,
    default_limit_w=300.0,
    idle_w=30.0,
    prefill_w=300.0,
    decode_w=165.0,
    thermal_resistance_c_per_w=0.15,
    memory_thermal_resistance_c_per_w=0.16,
    sw_slowdown_c=88.0,
    hw_slowdown_c=93.0,
    max_sm_clock_mhz=1740,
    mem_clock_mhz=7251,
)
GPU_SPECS: dict[str, GpuSpec] = {"h100": H100_SXM, "a100": A100_SXM, "a40": A40}


def gpu_uuid(seed: int, index: int) -> str:
    """A UUID in NVML's format, the same for the same (seed, index)."""
    bits = random.Random(f"wattwise-sim:{seed}:{index}").getrandbits(128)
    return f"GPU-{uuid_lib.UUID(int=bits, version=4)}"


BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_A = TypeVar("_A", bound=np.ndarray)


def _frozen(array: _A) -> _A:
    """`array`, read-only: a bank's inputs and states are replaced, never changed in place."""
    array.flags.writeable = False
    return array


def _check_limit(spec: GpuSpec, watts: float) -> None:
    """ValueError outside the GPU's [min, max] limit, as nvmlDeviceSetPowerManagementLimit fails."""
    if not spec.min_limit_w <= watts <= spec.max_limit_w:
        raise ValueError(
            f"power limit {watts:.1f} W outside [{spec.min_limit_w:.0f}, {spec.max_limit_w:.0f}] W for {spec.name}"
        )


def _check_clocks(spec: GpuSpec, min_mhz: int, max_mhz: int) -> GpuSpec:
    """ValueError for a locked-clock range the GPU does not have, as nvmlDeviceSetGpuLockedClocks fails."""
    if not spec.min_sm_clock_mhz <= min_mhz <= max_mhz <= spec.max_sm_clock_mhz:
        raise ValueError(
            f"locked clocks [{min_mhz}, {max_mhz}] MHz outside "
            f"[{spec.min_sm_clock_mhz}, {spec.max_sm_clock_mhz}] MHz or min > max for {spec.name}"
        )
    return spec


def _replaced(array: _A, index: int, value: object) -> _A:
    """A read-only copy of `array` with `value` at `index`."""
    out = array.copy()
    out[index] = value
    return _frozen(out)


@dataclass(slots=True)
class _StepInputs:
    """What one step computed with and arrived at: enough for the readings derived from it."""

    util: FloatArray
    cf: FloatArray
    lock: FloatArray
    clocks_locked: BoolArray
    limit: FloatArray
    hot: BoolArray
    thermal: FloatArray
    demand: FloatArray
    power: FloatArray
    capped: BoolArray
    temperature_c: FloatArray

    def throughput_factor(self, compute_curve: calibration.Curve, memory_curve: calibration.Curve) -> FloatArray:
        relative = np.where(self.capped, self.limit / self.demand, 1.0)
        compute_speed = compute_curve(relative) * self.lock
        memory_speed = memory_curve(relative) * np.minimum(1.0, self.lock / _MEMORY_BOUND_CLOCK_NEED)
        # Time-weighted mix: the compute share runs at compute_speed, the rest at memory_speed.
        mixed = 1.0 / (self.cf / np.maximum(compute_speed, 1e-9) + (1.0 - self.cf) / np.maximum(memory_speed, 1e-9))
        return np.clip(mixed * self.thermal, 0.0, 1.0)

    def sm_clock_mhz(self, spec: GpuSpec) -> FloatArray:
        # the capped share of dynamic power sets the SM clock (P ~ f^2 near the top of the V/f curve)
        dyn_allowed = np.maximum(self.power - spec.idle_w, 0.0)
        dyn_wanted = np.maximum(self.demand - spec.idle_w, 1e-9)
        clock_ratio = np.sqrt(np.minimum(dyn_allowed / dyn_wanted, 1.0)) * self.lock * self.thermal
        busy_clock = np.maximum(spec.max_sm_clock_mhz * clock_ratio, spec.min_sm_clock_mhz)
        return np.where(self.util > 0.0, busy_clock, float(spec.idle_sm_clock_mhz))

    def clock_event_reasons(self, spec: GpuSpec) -> IntArray:
        busy = self.util > 0.0
        reasons = np.zeros(len(self.util), dtype=np.int64)
        reasons |= np.where(busy, 0, CLOCK_EVENT_GPU_IDLE)
        reasons |= np.where(busy & self.capped, CLOCK_EVENT_SW_POWER_CAP, 0)
        reasons |= np.where(busy & self.clocks_locked, CLOCK_EVENT_APPLICATIONS_CLOCKS, 0)
        reasons |= np.where(self.hot, CLOCK_EVENT_SW_THERMAL_SLOWDOWN, 0)
        reasons |= np.where(self.temperature_c >= spec.hw_slowdown_c, CLOCK_EVENT_HW_SLOWDOWN, 0)
        return reasons


@dataclass(slots=True)
class _Derived:
    """The readings derived from one step, each computed when first read (a new step makes a new one)."""

    inputs: _StepInputs | None
    throughput: FloatArray | None = None
    sm_clock: FloatArray | None = None
    reasons: IntArray | None = None


class GpuBank:
    """The physics of `count` GPUs of one model, stepped together; index i is one GPU.

    Inputs (load, limits, locked clocks) are replaced by the setters, never changed in place, and are read-only:
    the readings derived from a step are computed from its inputs when first read (`step`).
    """

    def __init__(self, spec: GpuSpec, count: int, *, ambient_c: float = 25.0) -> None:
        if count < 1:
            raise ValueError("a GPU bank needs at least one GPU")
        self.spec = spec
        self.count = count
        self.ambient_c = ambient_c
        n = count
        self.utilization: FloatArray = _frozen(np.zeros(n))
        self.compute_fraction: FloatArray = _frozen(np.full(n, 0.5))
        self.power_limit_w: FloatArray = _frozen(np.full(n, spec.default_limit_w))
        self.clock_lock_ratio: FloatArray = _frozen(np.ones(n))  # locked max SM clock / max SM clock
        self.clocks_locked: BoolArray = _frozen(np.zeros(n, dtype=bool))
        self.demand_w: FloatArray = _frozen(np.full(n, spec.idle_w))  # lagged unlimited draw
        self.power_w: FloatArray = _frozen(np.full(n, spec.idle_w))
        self.energy_j: FloatArray = _frozen(np.zeros(n))
        self.temperature_c: FloatArray = _frozen(np.full(n, ambient_c + spec.thermal_resistance_c_per_w * spec.idle_w))
        self.memory_temperature_c: FloatArray = _frozen(
            np.full(n, ambient_c + spec.memory_thermal_resistance_c_per_w * spec.idle_w)
        )
        #: the readings derived from the last step; before the first, an idle GPU's
        self._derived = _Derived(
            None,
            throughput=np.ones(n),
            sm_clock=np.full(n, float(spec.idle_sm_clock_mhz)),
            reasons=np.full(n, CLOCK_EVENT_GPU_IDLE, dtype=np.int64),
        )
        self._decay_dt: float | None = None
        self._decay: tuple[np.float64, np.float64] = (np.float64(1.0), np.float64(1.0))
        self._compute_curve = calibration.compute_bound_curve()
        self._memory_curve = calibration.memory_bound_curve()

    # -- inputs ---------------------------------------------------------------------------------------------

    def set_load(self, utilization: FloatArray, compute_fraction: FloatArray) -> None:
        """Busy share (0..1) and compute-bound share of the work (0..1) of every GPU."""
        self.utilization = _frozen(np.clip(np.asarray(utilization, dtype=np.float64), 0.0, 1.0))
        self.compute_fraction = _frozen(np.clip(np.asarray(compute_fraction, dtype=np.float64), 0.0, 1.0))

    def set_power_limit(self, index: int, watts: float) -> None:
        """Enforce a limit on one GPU; ValueError outside the GPU's [min, max], like NVML."""
        _check_limit(self.spec, watts)
        self.power_limit_w = _replaced(self.power_limit_w, index, watts)

    def set_power_limits(self, watts: FloatArray) -> None:
        """Enforce every GPU's limit at once; ValueError (and nothing applied) if any is out of range."""
        watts = np.asarray(watts, dtype=np.float64)
        if watts.shape != (self.count,):
            raise ValueError(f"expected {self.count} limits, got shape {watts.shape}")
        bad = (watts < self.spec.min_limit_w) | (watts > self.spec.max_limit_w)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            self.set_power_limit(i, float(watts[i]))  # raises with the message
        self.power_limit_w = _frozen(watts.copy())

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        spec = _check_clocks(self.spec, min_mhz, max_mhz)
        self.clock_lock_ratio = _replaced(self.clock_lock_ratio, index, max_mhz / spec.max_sm_clock_mhz)
        self.clocks_locked = _replaced(self.clocks_locked, index, True)

    def reset_locked_clocks(self, index: int) -> None:
        self.clock_lock_ratio = _replaced(self.clock_lock_ratio, index, 1.0)
        self.clocks_locked = _replaced(self.clocks_locked, index, False)

    # -- physics --------------------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance power lag, the limit's clipping, thermals and energy by dt_s.

        The readings derived from a step alone (`throughput_factor`, `sm_clock_mhz`, `clock_event_reasons`) are
        computed from its inputs when first read: the node agent's simulated GPUs step 10 times a second and read
        clocks once, the fleet reads only the throughput.
        """
        if dt_s <= 0:
            raise ValueError("dt_s must be positive")
        spec = self.spec
        util, cf, lock = self.utilization, self.compute_fraction, self.clock_lock_ratio
        hot = self.temperature_c >= spec.sw_slowdown_c
        thermal = np.where(hot, _THERMAL_SLOWDOWN_FACTOR, 1.0)
        # Dynamic power: compute-bound ~ f^2 at the locked clock; memory-bound mostly HBM, weakly clock-bound.
        memory_clock_power = (1.0 - _MEMORY_BOUND_CLOCK_NEED) * lock + _MEMORY_BOUND_CLOCK_NEED
        dynamic = util * (
            cf * (spec.prefill_w - spec.idle_w) * lock**2
            + (1.0 - cf) * (spec.decode_w - spec.idle_w) * memory_clock_power
        )
        target = spec.idle_w + dynamic * thermal
        power_decay, thermal_decay = self._decays(dt_s)
        demand = _frozen(target + (self.demand_w - target) * power_decay)
        limit = self.power_limit_w
        capped = demand > limit
        power = _frozen(np.minimum(demand, limit))
        self.demand_w, self.power_w = demand, power
        self.energy_j = _frozen(self.energy_j + power * dt_s)

        core_target = self.ambient_c + spec.thermal_resistance_c_per_w * power
        mem_target = self.ambient_c + spec.memory_thermal_resistance_c_per_w * power
        temperature = self.temperature_c = _frozen(core_target + (self.temperature_c - core_target) * thermal_decay)
        self.memory_temperature_c = _frozen(mem_target + (self.memory_temperature_c - mem_target) * thermal_decay)
        self._derived = _Derived(
            _StepInputs(util, cf, lock, self.clocks_locked, limit, hot, thermal, demand, power, capped, temperature)
        )

    def _decays(self, dt_s: float) -> tuple[np.float64, np.float64]:
        """exp(-dt / tau) of the power lag and of the thermal model (the fleet steps by one dt throughout)."""
        if self._decay_dt != dt_s:
            spec = self.spec
            self._decay_dt = dt_s
            self._decay = (np.exp(-dt_s / spec.power_lag_s), np.exp(-dt_s / spec.thermal_tau_s))
        return self._decay

    @property
    def throughput_factor(self) -> FloatArray:
        """Share of its unlimited speed each GPU's work kept over the last step."""
        derived = self._derived
        if derived.throughput is None:
            assert derived.inputs is not None  # set by every step; the bank starts with the readings of an idle GPU
            derived.throughput = derived.inputs.throughput_factor(self._compute_curve, self._memory_curve)
        return derived.throughput

    @property
    def sm_clock_mhz(self) -> FloatArray:
        """The SM clock after the last step."""
        derived = self._derived
        if derived.sm_clock is None:
            assert derived.inputs is not None
            derived.sm_clock = derived.inputs.sm_clock_mhz(self.spec)
        return derived.sm_clock

    @property
    def clock_event_reasons(self) -> IntArray:
        """nvmlClocksEventReason* bits after the last step."""
        derived = self._derived
        if derived.reasons is None:
            assert derived.inputs is not None
            derived.reasons = derived.inputs.clock_event_reasons(self.spec)
        return derived.reasons

    @property
    def utilization_memory(self) -> FloatArray:
        """Share of time the memory is busy: decode keeps it busy, prefill much less."""
        return self.utilization * (0.3 * self.compute_fraction + 0.85 * (1.0 - self.compute_fraction))


Floats = tuple[float, ...]


@dataclass(slots=True)
class _SmallStep:
    """`_StepInputs` as a `SmallGpuBank` keeps them (tuples), with the readings derived from them once read."""

    util: Floats
    cf: Floats
    lock: Floats
    clocks_locked: tuple[bool, ...]
    limit: Floats
    hot: tuple[bool, ...]
    thermal: Floats
    demand: Floats
    power: Floats
    capped: tuple[bool, ...]
    temperature_c: Floats
    throughput: Floats | None = None
    sm_clock: Floats | None = None
    reasons: tuple[int, ...] | None = None

    def arrays(self) -> _StepInputs:
        return _StepInputs(
            *(
                np.array(v)
                for v in (
                    self.util,
                    self.cf,
                    self.lock,
                    self.clocks_locked,
                    self.limit,
                    self.hot,
                    self.thermal,
                    self.demand,
                    self.power,
                    self.capped,
                    self.temperature_c,
                )
            )
        )


class SmallGpuBank:
    """`GpuBank`'s physics in Python floats, for a node's few GPUs stepped often (the node agent's simulated GPUs).

    At 8 GPUs numpy's overhead per call is most of a step, and a step that runs 10 times a second after a sleep
    pays it cold: a numpy step costs the agent about 100 us, this one about 40 us. The same model, the same arithmetic
    in the same order, except that the decays use math.exp where numpy has its own exp (they differ in the last bit
    now and then, and a call into numpy alone costs a cold step 25 us): readings agree with GpuBank's to 1e-12
    (tests/sim/test_gpu.py). The readings derived from a step come from GpuBank's code (numpy) when first read.
    Readings are tuples, index i is one GPU; like GpuBank's inputs they are replaced, never changed in place.
    """

    def __init__(self, spec: GpuSpec, count: int, *, ambient_c: float = 25.0) -> None:
        if count < 1:
            raise ValueError("a GPU bank needs at least one GPU")
        self.spec = spec
        self.count = count
        self.ambient_c = ambient_c
        n = count
        self.utilization: Floats = (0.0,) * n
        self.compute_fraction: Floats = (0.5,) * n
        self.power_limit_w: Floats = (spec.default_limit_w,) * n
        self.clock_lock_ratio: Floats = (1.0,) * n
        self.clocks_locked: tuple[bool, ...] = (False,) * n
        self.demand_w: Floats = (spec.idle_w,) * n
        self.power_w: Floats = (spec.idle_w,) * n
        self.energy_j: Floats = (0.0,) * n
        self.temperature_c: Floats = (ambient_c + spec.thermal_resistance_c_per_w * spec.idle_w,) * n
        self.memory_temperature_c: Floats = (ambient_c + spec.memory_thermal_resistance_c_per_w * spec.idle_w,) * n
        self._last: _SmallStep | None = None
        #: (utilization, compute fraction, the memory utilization they give)
        self._utilization_memory: tuple[Floats, Floats, Floats] | None = None
        self._decay_dt: float | None = None
        self._decay = (1.0, 1.0)

    # -- inputs: as GpuBank's --------------------------------------------------------------------------------

    def set_load(self, utilization: Collection[float], compute_fraction: Collection[float]) -> None:
        """Busy share (0..1) and compute-bound share of the work (0..1) of every GPU."""
        if len(utilization) != self.count or len(compute_fraction) != self.count:
            raise ValueError(f"expected {self.count} loads")
        # min(max(x, 0), 1) is np.clip's answer, -0.0 and NaN included
        self.utilization = tuple([min(max(float(u), 0.0), 1.0) for u in utilization])
        self.compute_fraction = tuple([min(max(float(c), 0.0), 1.0) for c in compute_fraction])

    def set_power_limit(self, index: int, watts: float) -> None:
        """Enforce a limit on one GPU; ValueError outside the GPU's [min, max], like NVML."""
        _check_limit(self.spec, watts)
        self.power_limit_w = _with(self.power_limit_w, index, float(watts))

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        spec = _check_clocks(self.spec, min_mhz, max_mhz)
        self.clock_lock_ratio = _with(self.clock_lock_ratio, index, max_mhz / spec.max_sm_clock_mhz)
        self.clocks_locked = _with(self.clocks_locked, index, True)

    def reset_locked_clocks(self, index: int) -> None:
        self.clock_lock_ratio = _with(self.clock_lock_ratio, index, 1.0)
        self.clocks_locked = _with(self.clocks_locked, index, False)

    # -- physics: GpuBank.step, one GPU at a time, the same operations in the same order ------------------------

    def step(self, dt_s: float) -> None:
        if dt_s <= 0:
            raise ValueError("dt_s must be positive")
        spec = self.spec
        idle, sw_slowdown_c, ambient = spec.idle_w, spec.sw_slowdown_c, self.ambient_c
        prefill_dynamic, decode_dynamic = spec.prefill_w - spec.idle_w, spec.decode_w - spec.idle_w
        r_core, r_mem = spec.thermal_resistance_c_per_w, spec.memory_thermal_resistance_c_per_w
        power_decay, thermal_decay = self._decays(dt_s)
        hots, thermals, demands, powers, cappeds, energies, temps, mem_temps = [], [], [], [], [], [], [], []
        for util, cf, lock, limit, demand, energy, temp, mem_temp in zip(
            self.utilization,
            self.compute_fraction,
            self.clock_lock_ratio,
            self.power_limit_w,
            self.demand_w,
            self.energy_j,
            self.temperature_c,
            self.memory_temperature_c,
            strict=True,
        ):
            hot = temp >= sw_slowdown_c
            thermal = _THERMAL_SLOWDOWN_FACTOR if hot else 1.0
            memory_clock_power = (1.0 - _MEMORY_BOUND_CLOCK_NEED) * lock + _MEMORY_BOUND_CLOCK_NEED
            dynamic = util * (cf * prefill_dynamic * (lock * lock) + (1.0 - cf) * decode_dynamic * memory_clock_power)
            target = idle + dynamic * thermal
            demand = target + (demand - target) * power_decay
            capped = demand > limit
            power = limit if capped else demand
            core_target = ambient + r_core * power
            mem_target = ambient + r_mem * power
            hots.append(hot)
            thermals.append(thermal)
            demands.append(demand)
            powers.append(power)
            cappeds.append(capped)
            energies.append(energy + power * dt_s)
            temps.append(core_target + (temp - core_target) * thermal_decay)
            mem_temps.append(mem_target + (mem_temp - mem_target) * thermal_decay)
        self.demand_w, self.power_w, self.energy_j = tuple(demands), tuple(powers), tuple(energies)
        self.temperature_c, self.memory_temperature_c = tuple(temps), tuple(mem_temps)
        self._last = _SmallStep(
            self.utilization,
            self.compute_fraction,
            self.clock_lock_ratio,
            self.clocks_locked,
            self.power_limit_w,
            tuple(hots),
            tuple(thermals),
            self.demand_w,
            self.power_w,
            tuple(cappeds),
            self.temperature_c,
        )

    def _decays(self, dt_s: float) -> tuple[float, float]:
        """GpuBank's, with math.exp (see the class docstring)."""
        if self._decay_dt != dt_s:
            self._decay_dt = dt_s
            spec = self.spec
            self._decay = (math.exp(-dt_s / spec.power_lag_s), math.exp(-dt_s / spec.thermal_tau_s))
        return self._decay

    # -- readings derived from the last step ------------------------------------------------------------------

    @property
    def throughput_factor(self) -> Floats:
        last = self._last
        if last is None:
            return (1.0,) * self.count
        if last.throughput is None:
            curves = calibration.compute_bound_curve(), calibration.memory_bound_curve()
            last.throughput = tuple(last.arrays().throughput_factor(*curves).tolist())
        return last.throughput

    @property
    def sm_clock_mhz(self) -> Floats:
        """`_StepInputs.sm_clock_mhz`, one GPU at a time (the agent samples clocks every second)."""
        last = self._last
        if last is None:
            return (float(self.spec.idle_sm_clock_mhz),) * self.count
        if last.sm_clock is None:
            spec = self.spec
            idle, top, bottom = spec.idle_w, spec.max_sm_clock_mhz, float(spec.min_sm_clock_mhz)
            clocks = []
            for util, lock, thermal, demand, power in zip(
                last.util, last.lock, last.thermal, last.demand, last.power, strict=True
            ):
                dyn_allowed = max(power - idle, 0.0)
                dyn_wanted = max(demand - idle, 1e-9)
                clock_ratio = math.sqrt(min(dyn_allowed / dyn_wanted, 1.0)) * lock * thermal
                clocks.append(max(top * clock_ratio, bottom) if util > 0.0 else float(spec.idle_sm_clock_mhz))
            last.sm_clock = tuple(clocks)
        return last.sm_clock

    @property
    def clock_event_reasons(self) -> tuple[int, ...]:
        """`_StepInputs.clock_event_reasons`, one GPU at a time."""
        last = self._last
        if last is None:
            return (CLOCK_EVENT_GPU_IDLE,) * self.count
        if last.reasons is None:
            hw_slowdown_c = self.spec.hw_slowdown_c
            reasons = []
            for util, capped, locked, hot, temperature in zip(
                last.util, last.capped, last.clocks_locked, last.hot, last.temperature_c, strict=True
            ):
                busy = util > 0.0
                bits = 0 if busy else CLOCK_EVENT_GPU_IDLE
                if busy and capped:
                    bits |= CLOCK_EVENT_SW_POWER_CAP
                if busy and locked:
                    bits |= CLOCK_EVENT_APPLICATIONS_CLOCKS
                if hot:
                    bits |= CLOCK_EVENT_SW_THERMAL_SLOWDOWN
                if temperature >= hw_slowdown_c:
                    bits |= CLOCK_EVENT_HW_SLOWDOWN
                reasons.append(bits)
            last.reasons = tuple(reasons)
        return last.reasons

    @property
    def utilization_memory(self) -> Floats:
        """As GpuBank's; kept until the load changes (the agent reads it per GPU)."""
        utilization, compute_fraction = self.utilization, self.compute_fraction
        cached = self._utilization_memory
        if cached is not None and cached[0] is utilization and cached[1] is compute_fraction:
            return cached[2]
        memory = tuple([u * (0.3 * c + 0.85 * (1.0 - c)) for u, c in zip(utilization, compute_fraction, strict=True)])
        self._utilization_memory = (utilization, compute_fraction, memory)
        return memory


_T = TypeVar("_T")


def _with(values: tuple[_T, ...], index: int, value: _T) -> tuple[_T, ...]:
    """`values` with `value` at `index` (IndexError outside, as numpy)."""
    items = list(values)
    items[index] = value
    return tuple(items)


class SimulatedGpu:
    """One simulated GPU with NVML-like readings (the node agent's `sim` backend drives these)."""

    def __init__(
        self, spec: GpuSpec, index: int, uuid: str | None = None, *, ambient_c: float = 25.0, seed: int = 0
    ) -> None:
        self.spec = spec
        self.index = index
        self.uuid = uuid if uuid is not None else gpu_uuid(seed, index)
        self._bank = GpuBank(spec, 1, ambient_c=ambient_c)

    def set_load(self, utilization: float, compute_fraction: float = 0.5) -> None:
        """Busy share 0..1 and compute-bound (prefill) share of that work 0..1; sets the unlimited draw."""
        if not (0.0 <= utilization <= 1.0 and 0.0 <= compute_fraction <= 1.0):
            raise ValueError("utilization and compute_fraction must be within [0, 1]")
        self._bank.set_load(np.array([utilization]), np.array([compute_fraction]))

    def set_power_limit(self, watts: float) -> None:
        self._bank.set_power_limit(0, watts)

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._bank.set_locked_clocks(0, min_mhz, max_mhz)

    def reset_locked_clocks(self) -> None:
        self._bank.reset_locked_clocks(0)

    def step(self, dt_s: float) -> None:
        self._bank.step(dt_s)

    @property
    def power_limit_w(self) -> float:
        return float(self._bank.power_limit_w[0])

    @property
    def power_w(self) -> float:
        return float(self._bank.power_w[0])

    @property
    def energy_j(self) -> float:
        return float(self._bank.energy_j[0])

    @property
    def temperature_c(self) -> float:
        return float(self._bank.temperature_c[0])

    @property
    def memory_temperature_c(self) -> float:
        return float(self._bank.memory_temperature_c[0])

    @property
    def sm_clock_mhz(self) -> int:
        return round(float(self._bank.sm_clock_mhz[0]))

    @property
    def mem_clock_mhz(self) -> int:
        return self.spec.mem_clock_mhz

    @property
    def utilization_gpu(self) -> int:
        return round(float(self._bank.utilization[0]) * 100)

    @property
    def utilization_memory(self) -> int:
        return round(float(self._bank.utilization_memory[0]) * 100)

    @property
    def clock_event_reasons(self) -> int:
        return int(self._bank.clock_event_reasons[0])

    @property
    def throughput_factor(self) -> float:
        return float(self._bank.throughput_factor[0])

    @property
    def clocks_locked(self) -> bool:
        return bool(self._bank.clocks_locked[0])
