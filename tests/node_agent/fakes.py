"""Test doubles for the node agent: a fake of the pynvml surface with per-GPU scenario tables, a manual clock,
and a small operator that speaks the wire schema over real HTTP."""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pynvml

from wattwise.telemetry import wire


class ManualClock:
    """monotonic() and time() that move only when told to."""

    def __init__(self, start: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self.now = start
        self._wall_offset = wall - start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self._wall_offset

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class FakeGpu:
    """One GPU's NVML answers: a value per call, or an NVML return code to raise instead (`errors`)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    #: nvmlDeviceGetPowerUsage: on Hopper a 1 s mean
    power_mw: int = 350_000
    #: the field NVML_FI_DEV_POWER_INSTANT (scope GPU); None: the same as power_mw. A driver without the field:
    #: errors={"power_instant": NVML_ERROR_NOT_SUPPORTED}, answered in the field's own return code
    power_instant_mw: int | None = None
    energy_mj: int = 1_000_000
    limit_mw: int = 700_000
    min_mw: int = 200_000
    max_mw: int = 700_000
    default_mw: int = 700_000
    temp_c: int = 55
    mem_temp_c: int = 60
    sm_mhz: int = 1755
    mem_mhz: int = 2619
    util: tuple[int, int] = (80, 40)
    reasons: int = 0x4
    #: call name -> NVML return code raised instead of answering
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    #: when set, the limit NVML reports after a set (firmware/another tool overriding the agent)
    sticky_limit_mw: int | None = None
    set_calls: list[int] = dataclasses.field(default_factory=list)
    clock_calls: list[tuple[int, int] | None] = dataclasses.field(default_factory=list)
    #: call name -> how many times it was made (answered or not)
    calls: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass(frozen=True)
class _Util:
    gpu: int
    memory: int


class FakeNvml:
    """The pynvml function names the agent uses, answering from `FakeGpu` tables and raising the REAL
    `pynvml.NVMLError_*` classes (through pynvml.NVMLError(code), exactly as pynvml's _nvmlCheckReturn does)."""

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialised = False
        self.init_calls = 0
        self.shutdown_calls = 0

    def _check(self, call: str, gpu: FakeGpu | None = None) -> None:
        if gpu is not None:
            gpu.calls[call] += 1
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if gpu is not None and call in gpu.errors:
            code = gpu.errors[call]
            if code == pynvml.NVML_ERROR_UNINITIALIZED:
                self.initialised = False  # the library really is uninitialised now
                del gpu.errors[call]
            raise pynvml.NVMLError(code)

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._check("count")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check("handle", self.gpus[index])
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        self._check("uuid", h)
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        self._check("name", h)
        return h.name

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        self._check("power", h)
        return h.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        self._check("energy", h)
        return h.energy_mj

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        self._check("enforced_limit", h)
        return h.limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: FakeGpu) -> list[int]:
        self._check("constraints", h)
        return [h.min_mw, h.max_mw]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: FakeGpu) -> int:
        self._check("default_limit", h)
        return h.default_mw

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        self._check("temperature", h)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return h.temp_c

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, clock: int) -> int:
        self._check("clock", h)
        return h.sm_mhz if clock == pynvml.NVML_CLOCK_SM else h.mem_mhz

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> _Util:
        self._check("utilization", h)
        return _Util(*h.util)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        self._check("reasons", h)
        return h.reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeGpu) -> int:
        self._check("throttle_reasons", h)
        return h.reasons

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[int | tuple[int, int]]) -> list[pynvml.c_nvmlFieldValue_t]:
        self._check("field_values", h)
        values = (pynvml.c_nvmlFieldValue_t * len(ids))()  # the real ctypes structure
        for i, fid in enumerate(ids):
            try:  # an id, or (id, scope id), exactly as pynvml fills them in
                (values[i].fieldId, values[i].scopeId) = fid  # type: ignore[misc]
            except TypeError:
                values[i].fieldId = fid
            field = {
                pynvml.NVML_FI_DEV_MEMORY_TEMP: "memory_temperature",
                pynvml.NVML_FI_DEV_POWER_INSTANT: "power_instant",
            }
            name = field.get(values[i].fieldId)
            h.calls[name or "unknown_field"] += 1
            if name is None or name in h.errors or values[i].scopeId != 0:  # scope 0: the GPU (power fields)
                values[i].nvmlReturn = h.errors.get(name or "", pynvml.NVML_ERROR_NOT_SUPPORTED)
                continue
            values[i].nvmlReturn = pynvml.NVML_SUCCESS
            values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
            values[i].value.uiVal = (
                h.mem_temp_c
                if name == "memory_temperature"
                else (h.power_instant_mw if h.power_instant_mw is not None else h.power_mw)
            )
        return list(values)

    def nvmlDeviceSetPowerManagementLimit(self, h: FakeGpu, limit_mw: int) -> None:
        self._check("set_limit", h)
        if not h.min_mw <= limit_mw <= h.max_mw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        h.set_calls.append(limit_mw)
        h.limit_mw = h.sticky_limit_mw if h.sticky_limit_mw is not None else limit_mw

    def nvmlDeviceSetGpuLockedClocks(self, h: FakeGpu, lo: int, hi: int) -> None:
        self._check("set_clocks", h)
        h.clock_calls.append((lo, hi))

    def nvmlDeviceResetGpuLockedClocks(self, h: FakeGpu) -> None:
        self._check("reset_clocks", h)
        h.clock_calls.append(None)


class FakeOperator:
    """A real HTTP server on loopback answering POST /v1/reports with `reply`, recording every report."""

    def __init__(self, token: str | None = None) -> None:
        self.reply = wire.ReportReply()
        self.reports: list[wire.NodeReport] = []
        self.auth: list[str | None] = []
        self.status = 200
        self.token = token
        #: close each connection after answering, without saying so (what an idle-timeout does to keep-alive)
        self.drop_connections = False
        self.connections: set[tuple[str, int]] = set()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves it

            def do_POST(self) -> None:
                owner.connections.add(self.client_address)
                self.close_connection = owner.drop_connections
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.auth.append(self.headers.get("Authorization"))
                if self.path != wire.REPORT_PATH:
                    self._send(404, b"{}")
                    return
                if owner.token is not None and self.headers.get("Authorization") != f"Bearer {owner.token}":
                    self._send(401, b'{"error":"unauthorized"}')
                    return
                owner.reports.append(wire.NodeReport.model_validate_json(body))
                if owner.status != 200:
                    self._send(owner.status, b"{}")
                    return
                self._send(200, owner.reply.to_json())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOperator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def raw_reports(self) -> Iterator[dict[str, Any]]:
        for r in self.reports:
            yield json.loads(r.to_json())


def sample_value(collect: Callable[[], Any], metric: str, /, **labels: str) -> float | None:
    """A metric sample's value by name and (a subset of) labels from a collector, or None when absent."""
    for family in collect():
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
