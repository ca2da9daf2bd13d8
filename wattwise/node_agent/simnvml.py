"""Simulated NVML bindings: simulated GPUs behind pynvml's function names, units and error classes.

`wattwise agent --backend sim` hands an instance of `SimNvml` to the same `NvmlBackend` that drives the real
`pynvml`, so the agent's NVML code path (readings in mW/mJ, handles, error classification) is the one that
runs. It behaves as NVML does where the agent can tell: calls before `nvmlInit` raise NVMLError_Uninitialized,
an out-of-range limit raises NVMLError_InvalidArgument, a lost GPU raises NVMLError_GpuIsLost on every call.
The errors are the real `pynvml.NVMLError_*` classes, so `except pynvml.NVMLError_NotSupported` works.

The GPUs (one `wattwise.sim.gpu.SmallGpuBank`, stepped together: the fleet simulator's physics in Python floats,
which at 8 GPUs costs a fraction of numpy's per-call overhead) are stepped on the wall clock (monotonic) at every
read (at most every 5 ms), and driven by a synthetic load that is a pure function of (seed, GPU index, time): the
same seed gives the same load curve whatever the sample times.
Tests may pin a GPU's load (`set_load`) or lose a GPU (`lose`, or `lose_after` for `--sim-lose`).

Power, as the driver reports it: `nvmlDeviceGetPowerUsage` is the mean of the last second on Ampere (except GA100)
and newer (the H100 and A40 models here), the power of the instant on the GA100 (A100); the field
NVML_FI_DEV_POWER_INSTANT (scope GPU) is the power of the instant on all of them, unless the bindings are made with
`power_instant=False` (a driver without the field: it answers NOT_SUPPORTED in the field's own return code).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import pynvml

from wattwise.sim.gpu import GPU_SPECS, GpuSpec, SmallGpuBank, gpu_uuid

#: Seconds between the synthetic load's way-points; load moves linearly between them.
LOAD_SEGMENT_S = 20.0
_MIN_STEP_S = 0.005
#: Models whose nvmlDeviceGetPowerUsage is a 1 s mean (Hopper; Ampere except GA100), over this window.
AVERAGED_POWER_USAGE = frozenset({"h100", "a40"})
POWER_USAGE_WINDOW_S = 1.0
#: Power fields answer for the GPU alone; the module scope (GPU + NVIDIA CPU) exists on Grace Hopper, not behind x86.
_SCOPE_GPU = pynvml.NVML_POWER_SCOPE_GPU
_FI_MEMORY_TEMP = pynvml.NVML_FI_DEV_MEMORY_TEMP
_FI_POWER_INSTANT = pynvml.NVML_FI_DEV_POWER_INSTANT
_SUCCESS = pynvml.NVML_SUCCESS
_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
_UNSIGNED_INT = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT


class _Handle:
    """An opaque device handle, like pynvml's c_nvmlDevice_t pointer."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


@dataclasses.dataclass(frozen=True, slots=True)
class Utilization:
    gpu: int
    memory: int


@dataclasses.dataclass(slots=True)
class _Value:
    dVal: float = 0.0
    uiVal: int = 0


@dataclasses.dataclass(slots=True)
class FieldValue:
    """pynvml's c_nvmlFieldValue_t: each field carries its own return code."""

    fieldId: int
    nvmlReturn: int
    valueType: int = _UNSIGNED_INT
    value: _Value = dataclasses.field(default_factory=_Value)
    scopeId: int = 0
    timestamp: int = 0  # microseconds
    latencyUsec: int = 0


def synthetic_load(seed: int, index: int, t_s: float) -> tuple[float, float]:
    """(utilization 0..1, compute fraction 0..1) at `t_s` seconds: way-points from a seeded RNG, linear between.

    A mix of busy and quiet stretches with prefill-heavy and decode-heavy phases, enough to move power, clocks
    and throttle reasons the way an inference server does.
    """
    k, frac = _segment(t_s)
    (u0, du, c0, dc) = _segment_loads(seed, index, k)
    return u0 + du * frac, c0 + dc * frac


def _segment(t_s: float) -> tuple[int, float]:
    """(the way-point before `t_s`, how far `t_s` is on the way to the next one, 0..1)."""
    k = max(0, math.floor(t_s / LOAD_SEGMENT_S))
    return k, t_s / LOAD_SEGMENT_S - k if t_s > 0 else 0.0


def _segment_loads(seed: int, index: int, k: int) -> tuple[float, float, float, float]:
    """(utilization, its change, compute fraction, its change) over segment k."""
    a, b = _waypoint(seed, index, k), _waypoint(seed, index, k + 1)
    return a[0], b[0] - a[0], a[1], b[1] - a[1]


@functools.lru_cache(maxsize=256)
def _waypoint(seed: int, index: int, k: int) -> tuple[float, float]:
    rng = random.Random(f"{seed}:{index}:{k}")
    busy = rng.random() < 0.75
    util = rng.uniform(0.55, 1.0) if busy else rng.uniform(0.0, 0.15)
    return util, rng.uniform(0.2, 0.8)


class SimGpu:
    """One simulated GPU: index `index` of the node's bank, with the readings NVML gives in its units' terms."""

    __slots__ = ("_bank", "index", "uuid")

    def __init__(self, bank: SmallGpuBank, index: int, uuid: str) -> None:
        self._bank = bank
        self.index = index
        self.uuid = uuid

    @property
    def spec(self) -> GpuSpec:
        return self._bank.spec

    def set_power_limit(self, watts: float) -> None:
        self._bank.set_power_limit(self.index, watts)

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._bank.set_locked_clocks(self.index, min_mhz, max_mhz)

    def reset_locked_clocks(self) -> None:
        self._bank.reset_locked_clocks(self.index)

    @property
    def power_limit_w(self) -> float:
        return self._bank.power_limit_w[self.index]

    @property
    def power_w(self) -> float:
        """Drawn at this instant (after the last step)."""
        return self._bank.power_w[self.index]

    @property
    def energy_j(self) -> float:
        return self._bank.energy_j[self.index]

    @property
    def temperature_c(self) -> float:
        return self._bank.temperature_c[self.index]

    @property
    def memory_temperature_c(self) -> float:
        return self._bank.memory_temperature_c[self.index]

    @property
    def sm_clock_mhz(self) -> int:
        return round(self._bank.sm_clock_mhz[self.index])

    @property
    def mem_clock_mhz(self) -> int:
        return self._bank.spec.mem_clock_mhz

    @property
    def utilization_gpu(self) -> int:
        return round(self._bank.utilization[self.index] * 100)

    @property
    def utilization_memory(self) -> int:
        return round(self._bank.utilization_memory[self.index] * 100)

    @property
    def clock_event_reasons(self) -> int:
        return self._bank.clock_event_reasons[self.index]

    @property
    def clocks_locked(self) -> bool:
        return self._bank.clocks_locked[self.index]


class SimNvml:
    """A pynvml-compatible module object over N simulated GPUs of one model."""

    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        count: int = 8,
        model: str = "h100",
        *,
        seed: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        power_instant: bool = True,
    ) -> None:
        if model not in GPU_SPECS:
            raise ValueError(f"unknown GPU model {model!r}; have {', '.join(sorted(GPU_SPECS))}")
        # one bank steps every GPU at once: the envelope loop makes the GPUs step 10 times a second
        bank = self._bank = SmallGpuBank(GPU_SPECS[model], count) if count > 0 else None
        self.gpus = [SimGpu(bank, i, gpu_uuid(seed, i)) for i in range(count)] if bank is not None else []
        self.power_instant = power_instant
        self._averaged = model in AVERAGED_POWER_USAGE
        #: (time, every GPU's energy J) after each step over the last POWER_USAGE_WINDOW_S, for the averaged reading
        self._energy_history = collections.deque[tuple[float, tuple[float, ...]]]()
        self._seed = seed
        #: the current load segment, and every GPU's `_segment_loads` over it
        self._segment: tuple[int, list[tuple[float, float, float, float]]] = (-1, [])
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._last_step = self._t0
        self._pinned: dict[int, tuple[float, float]] = {}
        self._lost: set[int] = set()
        self._lose_at: dict[int, float] = {}  # index -> seconds after start
        self._initialised = 0
        self._lock = threading.Lock()

    # --- test and demo controls ------------------------------------------------------------------------------

    def set_load(self, index: int, utilization: float, compute_fraction: float = 0.5) -> None:
        """Pin a GPU's load (instead of the synthetic curve)."""
        self._pinned[index] = (utilization, compute_fraction)

    def lose(self, index: int) -> None:
        """The GPU falls off the bus: every later call on it raises NVMLError_GpuIsLost."""
        self._lost.add(index)

    def lose_after(self, index: int, seconds: float) -> None:
        """Lose the GPU once `seconds` have passed since the bindings were created (for demos and soak runs)."""
        self._lose_at[index] = seconds

    # --- plumbing ------------------------------------------------------------------------------------------------

    @staticmethod
    def _raise(code: int) -> NoReturn:
        raise pynvml.NVMLError(code)  # pynvml maps the code to its NVMLError_* subclass

    def _advance(self, now: float) -> None:
        """Step every GPU to `now`; the load is re-evaluated at each step."""
        dt = now - self._last_step
        self._last_step = now
        bank = self._bank
        if bank is None:
            return
        k, frac = _segment(now - self._t0)
        if k != self._segment[0]:  # once every LOAD_SEGMENT_S: way-points are looked up once per segment, not per step
            self._segment = (k, [_segment_loads(self._seed, i, k) for i in range(bank.count)])
        # synthetic_load of every GPU (the same arithmetic), unless pinned
        segment = self._segment[1]
        utilization = [u0 + du * frac for u0, du, _, _ in segment]
        compute = [c0 + dc * frac for _, _, c0, dc in segment]
        for i, (u, c) in list(self._pinned.items()):
            if 0 <= i < bank.count:
                utilization[i], compute[i] = u, c
        bank.set_load(utilization, compute)
        history = self._energy_history
        if not history:
            history.append((now - dt, bank.energy_j))
        bank.step(dt)
        history.append((now, bank.energy_j))  # a step replaces the tuple, never changes it
        while len(history) > 2 and history[1][0] <= now - POWER_USAGE_WINDOW_S:
            history.popleft()

    def _gpu(self, handle: Any) -> SimGpu:
        if not self._initialised:
            self._raise(pynvml.NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
            self._raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if handle.index in self._lose_at and self._monotonic() - self._t0 >= self._lose_at[handle.index]:
            self._lost.add(handle.index)
            del self._lose_at[handle.index]
        if handle.index in self._lost:
            self._raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        index: int = handle.index
        with self._lock:
            now = self._monotonic()
            if now - self._last_step >= _MIN_STEP_S:
                self._advance(now)
        return self.gpus[index]

    # --- the pynvml surface ------------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._initialised += 1

    def nvmlShutdown(self) -> None:
        if not self._initialised:
            self._raise(pynvml.NVML_ERROR_UNINITIALIZED)
        self._initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        if not self._initialised:
            self._raise(pynvml.NVML_ERROR_UNINITIALIZED)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not self._initialised:
            self._raise(pynvml.NVML_ERROR_UNINITIALIZED)
        if not 0 <= index < len(self.gpus):
            self._raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        return self._gpu(h).uuid

    def nvmlDeviceGetName(self, h: _Handle) -> str:
        return self._gpu(h).spec.name

    def nvmlDeviceGetIndex(self, h: _Handle) -> int:
        return self._gpu(h).index

    def nvmlDeviceGetPowerUsage(self, h: _Handle) -> int:
        gpu = self._gpu(h)
        if not self._averaged:
            return round(gpu.power_w * 1000)
        with self._lock:
            history = self._energy_history
            if len(history) < 2:
                return round(gpu.power_w * 1000)
            (t0, e0), (t1, e1) = history[0], history[-1]
        return round((e1[gpu.index] - e0[gpu.index]) / (t1 - t0) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: _Handle) -> int:
        return int(self._gpu(h).energy_j * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: _Handle) -> int:
        return round(self._gpu(h).power_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimit(self, h: _Handle) -> int:
        return round(self._gpu(h).power_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: _Handle) -> list[int]:
        spec = self._gpu(h).spec
        return [round(spec.min_limit_w * 1000), round(spec.max_limit_w * 1000)]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: _Handle) -> int:
        return round(self._gpu(h).spec.default_limit_w * 1000)

    def nvmlDeviceGetTemperature(self, h: _Handle, sensor: int) -> int:
        gpu = self._gpu(h)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            self._raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return round(gpu.temperature_c)

    def nvmlDeviceGetClockInfo(self, h: _Handle, clock_type: int) -> int:
        gpu = self._gpu(h)
        if clock_type == pynvml.NVML_CLOCK_SM:
            return int(gpu.sm_clock_mhz)
        if clock_type == pynvml.NVML_CLOCK_MEM:
            return int(gpu.mem_clock_mhz)
        self._raise(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetUtilizationRates(self, h: _Handle) -> Utilization:
        gpu = self._gpu(h)
        return Utilization(int(gpu.utilization_gpu), int(gpu.utilization_memory))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: _Handle) -> int:
        return int(self._gpu(h).clock_event_reasons)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: _Handle) -> int:
        return int(self._gpu(h).clock_event_reasons)

    def nvmlDeviceGetFieldValues(self, h: _Handle, field_ids: list[int | tuple[int, int]]) -> list[FieldValue]:
        """Each id is a field id or (field id, scope id), as pynvml takes them; each value has its own return code."""
        gpu = self._gpu(h)
        stamp = round(self._monotonic() * 1e6)
        out = []
        for item in field_ids:
            fid, scope = item if isinstance(item, tuple) else (item, 0)
            if fid == _FI_MEMORY_TEMP:
                code, value = _SUCCESS, _Value(0.0, round(gpu.memory_temperature_c))
            elif fid == _FI_POWER_INSTANT and self.power_instant and scope == _SCOPE_GPU:
                code, value = _SUCCESS, _Value(0.0, round(gpu.power_w * 1000))
            else:
                code, value = _NOT_SUPPORTED, _Value()
            out.append(FieldValue(fid, code, _UNSIGNED_INT, value, scope, stamp))
        return out

    def nvmlDeviceSetPowerManagementLimit(self, h: _Handle, limit_mw: int) -> None:
        gpu = self._gpu(h)
        lo, hi = round(gpu.spec.min_limit_w * 1000), round(gpu.spec.max_limit_w * 1000)
        if not lo <= limit_mw <= hi:
            self._raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.set_power_limit(limit_mw / 1000.0)

    def nvmlDeviceSetGpuLockedClocks(self, h: _Handle, min_mhz: int, max_mhz: int) -> None:
        gpu = self._gpu(h)
        if min_mhz > max_mhz:
            self._raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.set_locked_clocks(min_mhz, max_mhz)

    def nvmlDeviceResetGpuLockedClocks(self, h: _Handle) -> None:
        self._gpu(h).reset_locked_clocks()
