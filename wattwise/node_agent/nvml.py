"""The one place every NVML call passes through, and what each NVML error means for the agent.

The bindings are the real `pynvml` module (package nvidia-ml-py), or anything with the same surface: the
simulated GPUs (`wattwise.node_agent.simnvml`) and the test fakes. Errors are classified by NVML return code,
the same way for all three:

- library not found / driver not loaded / NVML-RM version mismatch at init: fatal, `NvmlUnavailable` with a
  hint a person can act on (the agent exits non-zero and Kubernetes restarts it with back-off);
- NOT_SUPPORTED: the field is dropped for that GPU and logged once, never reported as 0;
- FUNCTION_NOT_FOUND (bindings newer than the driver): treated like NOT_SUPPORTED, logged once;
- GPU_IS_LOST: `GpuLost` for that device only; the caller marks it lost and carries on with the others;
- UNINITIALIZED: the session re-initialises on the next call;
- NO_PERMISSION on a setter: `ActuationFailed` with result noPermission (the agent needs CAP_SYS_ADMIN).

Init is lazy and guarded by a lock; `shutdown()` is idempotent and runs at exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from wattwise.telemetry.vocabulary import ActuationResult

log = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return codes (nvml.h); the same values pynvml exposes as NVML_ERROR_*.
ERROR_UNINITIALIZED: Final = 1
ERROR_INVALID_ARGUMENT: Final = 2
ERROR_NOT_SUPPORTED: Final = 3
ERROR_NO_PERMISSION: Final = 4
ERROR_DRIVER_NOT_LOADED: Final = 9
ERROR_LIBRARY_NOT_FOUND: Final = 12
ERROR_FUNCTION_NOT_FOUND: Final = 13
ERROR_GPU_IS_LOST: Final = 15
ERROR_LIB_RM_VERSION_MISMATCH: Final = 18

_FATAL_INIT_HINTS: Final = {
    ERROR_LIBRARY_NOT_FOUND: (
        "libnvidia-ml.so.1 was not found: run the agent with the NVIDIA container runtime "
        "(runtimeClassName: nvidia) or mount the driver libraries, or use --backend sim on a machine without GPUs"
    ),
    ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded on this node (is this a GPU node?)",
    ERROR_LIB_RM_VERSION_MISMATCH: (
        "the NVML library and the kernel driver versions differ: the driver was upgraded without a reboot"
    ),
    ERROR_NO_PERMISSION: "no permission to open the GPU device nodes (/dev/nvidia*): check the pod's device access",
}


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this node at all; `hint` says what to do about it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}: {hint}")
        self.hint = hint


class GpuLost(RuntimeError):
    """NVML_ERROR_GPU_IS_LOST: the device fell off the bus; only a reset brings it back."""


class ActuationFailed(RuntimeError):
    """A setter failed; `result` is the wire classification the operator sees."""

    def __init__(self, result: ActuationResult, message: str) -> None:
        super().__init__(message)
        self.result = result


def error_code(exc: BaseException) -> int | None:
    """The NVML return code of a pynvml.NVMLError (they carry it in `.value`), else None."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


class NvmlSession:
    """Wraps one bindings module; owns init/shutdown and the once-only logging of unsupported fields."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self._error_type: type[BaseException] = lib.NVMLError
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._initialised = False
        self._logged: set[tuple[str, str]] = set()
        #: (device key, field) pairs NVML said it does not support; never asked again
        self.unsupported: set[tuple[str, str]] = set()
        #: counts of NVML errors by (call, error name), exported as a metric
        self.error_counts: dict[tuple[str, str], int] = {}

    # --- lifecycle -------------------------------------------------------------------------------------------

    def ensure_init(self) -> None:
        """nvmlInit once (again after UNINITIALIZED); fatal errors become NvmlUnavailable."""
        if self._initialised:
            return
        with self._lock:
            if self._initialised:
                return
            try:
                self.lib.nvmlInit()
            except self._error_type as exc:
                code = error_code(exc)
                hint = _FATAL_INIT_HINTS.get(code if code is not None else -1, "see the driver logs (dmesg)")
                raise NvmlUnavailable(f"NVML init failed ({exc})", hint) from exc
            self._initialised = True

    def shutdown(self) -> None:
        with self._lock:
            if not self._initialised:
                return
            self._initialised = False
            try:
                self.lib.nvmlShutdown()
            except self._error_type as exc:  # nothing left to do about it at exit
                log.warning("nvmlShutdown failed: %s", exc)

    @property
    def initialised(self) -> bool:
        return self._initialised

    # --- calls -------------------------------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a bindings function, turning GPU_IS_LOST into GpuLost and noting UNINITIALIZED; re-raises."""
        if not self._initialised:  # (checked here first: 100 calls a second, nearly all initialised)
            self.ensure_init()
        try:
            return fn(*args)
        except self._error_type as exc:
            code = error_code(exc)
            self.count(getattr(fn, "__name__", "?"), type(exc).__name__)
            if code == ERROR_UNINITIALIZED:
                self._initialised = False  # re-init on the next call
            if code == ERROR_GPU_IS_LOST:
                raise GpuLost(str(exc)) from exc
            raise

    def read(self, device: str, field: str, fn: Callable[..., T], *args: Any) -> T | None:
        """A reading that may be unsupported: None (and never asked again) on NOT_SUPPORTED/FUNCTION_NOT_FOUND."""
        if (device, field) in self.unsupported:
            return None
        try:
            return self.call(fn, *args)
        except self._error_type as exc:
            code = error_code(exc)
            if code in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                self.unsupported.add((device, field))
                self._log_once(field, f"{field} is not available on {device} ({exc}); leaving it out")
                return None
            raise

    def setter(self, fn: Callable[..., object], *args: Any) -> None:
        """A setter: NVML errors become ActuationFailed with the result the operator will see."""
        try:
            self.call(fn, *args)
        except self._error_type as exc:
            code = error_code(exc)
            result = {
                ERROR_NO_PERMISSION: ActuationResult.NO_PERMISSION,
                ERROR_NOT_SUPPORTED: ActuationResult.NOT_SUPPORTED,
                ERROR_FUNCTION_NOT_FOUND: ActuationResult.NOT_SUPPORTED,
                ERROR_INVALID_ARGUMENT: ActuationResult.INVALID_ARGUMENT,
            }.get(code if code is not None else -1, ActuationResult.ERROR)
            message = f"{getattr(fn, '__name__', 'setter')}: {exc}"
            if result is ActuationResult.NO_PERMISSION:
                message += " (setting power limits needs CAP_SYS_ADMIN or root in the agent container)"
                self._log_once("no-permission", message)
            raise ActuationFailed(result, message) from exc

    def is_nvml_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self._error_type)

    def count(self, call: str, error: str) -> None:
        """Count an NVML error (also one a call reports per field rather than raising)."""
        with self._count_lock:  # the sampling loop and the envelope loop call NVML from two threads
            key = (call, error)
            self.error_counts[key] = self.error_counts.get(key, 0) + 1

    def errors(self) -> dict[tuple[str, str], int]:
        """A copy of `error_counts`, safe while another thread counts."""
        with self._count_lock:
            return dict(self.error_counts)

    def _log_once(self, key: str, message: str) -> None:
        if (key, message) not in self._logged:
            self._logged.add((key, message))
            log.warning("%s", message)
