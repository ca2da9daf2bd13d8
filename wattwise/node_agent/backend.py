"""GPU access for the agent: read every GPU, set limits and clocks, through an NVML-shaped bindings module.

There is one backend implementation and two bindings: `nvml` is the real `pynvml`, `sim` is
`wattwise.node_agent.simnvml` (simulated GPUs behind the same function names and error classes). Keeping the
sim at the bindings level means the code that runs on a real node, error handling included, is the code the
simulator and the tests exercise.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Literal, Protocol

from wattwise.node_agent.nvml import (
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_NOT_SUPPORTED,
    ActuationFailed,
    GpuLost,
    NvmlSession,
)
from wattwise.telemetry.vocabulary import ActuationResult, GpuStatus

log = logging.getLogger(__name__)

# NVML constants, as in nvml.h (and pynvml).
TEMPERATURE_GPU = 0
CLOCK_SM = 1
CLOCK_MEM = 2
FI_DEV_MEMORY_TEMP = 82
#: Power of this instant in mW (nvml.h: "Current GPU power"); nvmlDeviceGetPowerUsage is a 1 s average on Ampere
#: (except GA100) and newer. Power fields take a scope: 0 is the GPU alone (1, the module, is Grace Hopper's).
FI_DEV_POWER_INSTANT = 186
POWER_SCOPE_GPU = 0
_VALUE_FIELDS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")  # by nvmlValueType_t

#: nvmlClocksEventReason* bits, named as metric label values.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]


@dataclasses.dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one instant. None means unsupported (or not read because the GPU is lost)."""

    index: int
    uuid: str
    status: GpuStatus
    monotonic_s: float  #: when it was read, for rates (energy -> average power)
    wall_s: float
    name: str | None = None
    error: str | None = None
    power_w: float | None = None
    energy_j: float | None = None
    enforced_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None
    default_limit_w: float | None = None
    temperature_c: float | None = None
    memory_temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    clock_event_reasons: int | None = None

    @property
    def limits_known(self) -> bool:
        return None not in (self.min_limit_w, self.max_limit_w, self.default_limit_w)


class GpuBackend(Protocol):
    """What the agent needs from a node's GPUs."""

    name: Literal["nvml", "sim"]

    @property
    def uuids(self) -> list[str]: ...
    def start(self) -> None: ...
    def sample(self) -> list[GpuReading]: ...
    def instant_power_w(self, index: int) -> float | None: ...
    def set_power_limit(self, index: int, watts: float) -> float | None: ...
    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None: ...
    def reset_locked_clocks(self, index: int) -> None: ...
    def close(self) -> None: ...


@dataclasses.dataclass(slots=True)
class _Device:
    index: int
    handle: Any
    uuid: str
    name: str | None
    lost_reason: str | None = None
    # constraints do not change while the driver is loaded: read once
    constraints: tuple[float, float] | None = None
    default_w: float | None = None
    #: where this GPU's instantaneous power comes from, decided at the first read (None: not decided yet)
    power_source: Literal["instant", "average"] | None = None


class NvmlBackend:
    """GpuBackend over NVML-shaped bindings (`pynvml`, or the simulated ones)."""

    def __init__(self, lib: Any, name: Literal["nvml", "sim"] = "nvml", clock: Any = time) -> None:
        self.name: Literal["nvml", "sim"] = name
        self.session = NvmlSession(lib)
        self._lib = lib
        self._clock = clock
        self._devices: list[_Device] = []

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Init NVML and enumerate the GPUs (raises NvmlUnavailable when NVML cannot work on this node)."""
        self.session.ensure_init()
        count = int(self.session.call(self._lib.nvmlDeviceGetCount))
        self._devices = [self._open(i) for i in range(count)]
        log.info("found %d GPU(s): %s", count, ", ".join(f"{d.index}={d.uuid}" for d in self._devices))

    def close(self) -> None:
        self.session.shutdown()

    def _open(self, index: int) -> _Device:
        try:
            handle = self.session.call(self._lib.nvmlDeviceGetHandleByIndex, index)
            uuid = str(self.session.call(self._lib.nvmlDeviceGetUUID, handle))
        except GpuLost as exc:
            return _Device(index, None, f"unknown-{index}", None, lost_reason=str(exc))
        except Exception as exc:
            if not self.session.is_nvml_error(exc):
                raise
            return _Device(index, None, f"unknown-{index}", None, lost_reason=f"cannot open: {exc}")
        name = self.session.read(uuid, "name", self._lib.nvmlDeviceGetName, handle)
        return _Device(index, handle, uuid, str(name) if name is not None else None)

    @property
    def uuids(self) -> list[str]:
        return [d.uuid for d in self._devices]

    # --- reading -----------------------------------------------------------------------------------------------

    def sample(self) -> list[GpuReading]:
        return [self._sample_one(d) for d in self._devices]

    def _sample_one(self, dev: _Device) -> GpuReading:
        mono, wall = self._clock.monotonic(), self._clock.time()
        if dev.lost_reason is not None:
            return GpuReading(dev.index, dev.uuid, GpuStatus.LOST, mono, wall, dev.name, error=dev.lost_reason)
        try:
            return self._read(dev, mono, wall)
        except GpuLost as exc:
            dev.lost_reason = f"GPU is lost ({exc}); it needs a reset"
            log.error("GPU %d (%s) is lost: %s", dev.index, dev.uuid, exc)
            return GpuReading(dev.index, dev.uuid, GpuStatus.LOST, mono, wall, dev.name, error=dev.lost_reason)
        except Exception as exc:
            if not self.session.is_nvml_error(exc):
                raise
            return GpuReading(dev.index, dev.uuid, GpuStatus.ERROR, mono, wall, dev.name, error=str(exc))

    def _read(self, dev: _Device, mono: float, wall: float) -> GpuReading:
        lib, h, u, read = self._lib, dev.handle, dev.uuid, self.session.read
        if dev.constraints is None:
            pair = read(u, "limit_constraints", lib.nvmlDeviceGetPowerManagementLimitConstraints, h)
            if pair is not None:
                dev.constraints = (pair[0] / 1000.0, pair[1] / 1000.0)
        if dev.default_w is None:
            default_mw = read(u, "default_limit", lib.nvmlDeviceGetPowerManagementDefaultLimit, h)
            dev.default_w = default_mw / 1000.0 if default_mw is not None else None
        power = read(u, "power", lib.nvmlDeviceGetPowerUsage, h)
        energy = read(u, "energy", lib.nvmlDeviceGetTotalEnergyConsumption, h)
        enforced = read(u, "enforced_limit", lib.nvmlDeviceGetEnforcedPowerLimit, h)
        temp = read(u, "temperature", lib.nvmlDeviceGetTemperature, h, TEMPERATURE_GPU)
        sm = read(u, "sm_clock", lib.nvmlDeviceGetClockInfo, h, CLOCK_SM)
        mem = read(u, "mem_clock", lib.nvmlDeviceGetClockInfo, h, CLOCK_MEM)
        util = read(u, "utilization", lib.nvmlDeviceGetUtilizationRates, h)
        reasons = read(u, "clock_event_reasons", lib.nvmlDeviceGetCurrentClocksEventReasons, h)
        if reasons is None:  # drivers before 535 only have the deprecated name for the same bitmask
            reasons = read(u, "clock_throttle_reasons", lib.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        return GpuReading(
            index=dev.index,
            uuid=u,
            status=GpuStatus.OK,
            monotonic_s=mono,
            wall_s=wall,
            name=dev.name,
            power_w=power / 1000.0 if power is not None else None,
            energy_j=energy / 1000.0 if energy is not None else None,
            enforced_limit_w=enforced / 1000.0 if enforced is not None else None,
            min_limit_w=dev.constraints[0] if dev.constraints else None,
            max_limit_w=dev.constraints[1] if dev.constraints else None,
            default_limit_w=dev.default_w,
            temperature_c=float(temp) if temp is not None else None,
            memory_temperature_c=self._memory_temperature(dev),
            sm_clock_mhz=int(sm) if sm is not None else None,
            mem_clock_mhz=int(mem) if mem is not None else None,
            utilization_gpu=int(util.gpu) if util is not None else None,
            utilization_memory=int(util.memory) if util is not None else None,
            clock_event_reasons=int(reasons) if reasons is not None else None,
        )

    def _memory_temperature(self, dev: _Device) -> float | None:
        """HBM temperature through the field-values API; each field carries its own return code."""
        values = self.session.read(
            dev.uuid, "memory_temperature", self._lib.nvmlDeviceGetFieldValues, dev.handle, [FI_DEV_MEMORY_TEMP]
        )
        if values is None:
            return None
        field = values[0]
        if field.nvmlReturn != 0:
            self.session.unsupported.add((dev.uuid, "memory_temperature"))
            return None
        value_type = int(field.valueType)
        if not 0 <= value_type < len(_VALUE_FIELDS):
            return None
        return float(getattr(field.value, _VALUE_FIELDS[value_type]))

    def instant_power_w(self, index: int) -> float | None:
        """This GPU's power now (W) for the fast envelope loop; None when it cannot be read (never a made-up 0).

        The field NVML_FI_DEV_POWER_INSTANT where the driver has it; where it answers NOT_SUPPORTED (per field, or
        the whole call), nvmlDeviceGetPowerUsage, decided once per GPU: on GPUs before Ampere that call is
        instantaneous already, and a 1 s average is still better than nothing. A lost GPU is marked lost.
        """
        dev = self._devices[index]
        if dev.lost_reason is not None:
            return None
        try:
            if dev.power_source != "average":
                supported, watts = self._power_field(dev)
                if supported:  # it answered, or failed just this once: no 1 s average in its place
                    return watts
            power = self.session.read(dev.uuid, "power", self._lib.nvmlDeviceGetPowerUsage, dev.handle)
        except GpuLost as exc:
            dev.lost_reason = f"GPU is lost ({exc}); it needs a reset"
            log.error("GPU %d (%s) is lost: %s", dev.index, dev.uuid, exc)
            return None
        except Exception as exc:
            if not self.session.is_nvml_error(exc):
                raise
            return None
        return power / 1000.0 if power is not None else None

    def _power_field(self, dev: _Device) -> tuple[bool, float | None]:
        """(supported, W) from the instantaneous-power field; `dev.power_source` remembers NVML's answer."""
        values = self.session.read(
            dev.uuid,
            "power_instant",
            self._lib.nvmlDeviceGetFieldValues,
            dev.handle,
            [(FI_DEV_POWER_INSTANT, POWER_SCOPE_GPU)],
        )
        if values is None:  # the call itself is not supported (old driver): the session remembers it
            self._fall_back(dev, "nvmlDeviceGetFieldValues is not supported")
            return False, None
        field = values[0]
        code = int(field.nvmlReturn)
        if code in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
            self._fall_back(dev, f"field {FI_DEV_POWER_INSTANT} answers NVML error {code}")
            return False, None
        if code == ERROR_GPU_IS_LOST:
            raise GpuLost(f"field {FI_DEV_POWER_INSTANT}: GPU is lost")
        if code != 0:  # an error of this field this time: no reading this tick, asked again next tick
            self.session.count("nvmlDeviceGetFieldValues", f"field {FI_DEV_POWER_INSTANT}: error {code}")
            return True, None
        value_type = int(field.valueType)
        if not 0 <= value_type < len(_VALUE_FIELDS):
            return True, None
        dev.power_source = "instant"
        return True, float(getattr(field.value, _VALUE_FIELDS[value_type])) / 1000.0

    def _fall_back(self, dev: _Device, why: str) -> None:
        dev.power_source = "average"
        log.info(
            "GPU %d (%s): no instantaneous power (%s); the envelope loop reads nvmlDeviceGetPowerUsage",
            dev.index,
            dev.uuid,
            why,
        )

    def power_source(self, index: int) -> Literal["instant", "average"] | None:
        """Where `instant_power_w` reads this GPU from, once decided."""
        return self._devices[index].power_source

    # --- actuation ---------------------------------------------------------------------------------------------

    def _handle(self, index: int) -> Any:
        dev = self._devices[index]
        if dev.lost_reason is not None:
            raise ActuationFailed(ActuationResult.ERROR, f"GPU {index} is lost")
        return dev.handle

    def set_power_limit(self, index: int, watts: float) -> float | None:
        """Set the limit (NVML takes integer milliwatts) and return the enforced limit read back (W)."""
        handle = self._handle(index)
        try:
            self.session.setter(self._lib.nvmlDeviceSetPowerManagementLimit, handle, round(watts * 1000))
            back = self.session.read(
                self._devices[index].uuid, "enforced_limit", self._lib.nvmlDeviceGetEnforcedPowerLimit, handle
            )
        except GpuLost as exc:
            reason = f"GPU is lost ({exc}); it needs a reset"
            self._devices[index].lost_reason = reason
            raise ActuationFailed(ActuationResult.ERROR, reason) from exc
        return back / 1000.0 if back is not None else None

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        self.session.setter(self._lib.nvmlDeviceSetGpuLockedClocks, self._handle(index), min_mhz, max_mhz)

    def reset_locked_clocks(self, index: int) -> None:
        self.session.setter(self._lib.nvmlDeviceResetGpuLockedClocks, self._handle(index))
