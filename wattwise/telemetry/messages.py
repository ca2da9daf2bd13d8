"""The node agent's side of the wire schema without pydantic: frozen dataclasses and a strict codec.

The pydantic models in `wattwise.telemetry.wire` stay the contract (the operator validates every report with
them, and WIRE.md documents them). This module mirrors them, field for field and constraint for constraint, for
the one process where their cost shows: the agent runs on every GPU node, and pydantic (with pydantic-core and
the models' schemas) is ~18 MiB of its resident memory. tests/node_agent/test_messages.py pins the two together:
every report built here validates against `wire.NodeReport` with the same values, and `decode_reply` accepts
exactly the replies `wire.ReportReply` accepts (pydantic's lax JSON mode: numbers in strings, "yes"/"no"
booleans, snake_case field names beside the camelCase ones, unknown fields ignored) and yields the same values.

- Building a message checks its ranges (`Watts` 0-10,000, percentages 0-100, ...) and raises `WireError`, as a
  pydantic model would raise a ValidationError: a report the operator would refuse is never sent.
- `encode` writes camelCase keys and leaves out None, as `WireModel.to_json` does; a non-finite reading in an
  unconstrained field (a temperature) is left out too, which pydantic writes as null: both mean "unknown".
- `decode_reply` raises `WireError` naming the JSON path (`gpus.GPU-1.powerLimitWatts: ...`). The envelope's
  cross-field rules (a floor above its ceiling; a GPU listed twice in `protected` or `flexible`, or in both) are
  refused with the same message and path as pydantic's model validators give.
- A reply's node envelope converts to the policy's own (`NodeEnvelope.to_policy`), which the agent's fast loop
  re-shares with `wattwise.policy.envelope.share` (that module is dependency-free as well).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

from wattwise.policy import envelope as policy_envelope
from wattwise.telemetry.vocabulary import API_VERSION, ActuationResult, AgentMode, GpuStatus, Tier

T = TypeVar("T")

#: `Watts` in wire.py
_MAX_WATTS: Final = 10_000
#: `NodeWatts` in wire.py
_MAX_NODE_WATTS: Final = 1_000_000
#: `Priority` in wire.py (as WorkloadClass.spec.priority)
_MAX_PRIORITY: Final = 1000
#: jiter (pydantic's JSON parser) refuses documents nested deeper than this, and numbers with more digits than
#: this before the decimal point
_MAX_DEPTH: Final = 200
_MAX_DIGITS: Final = 4300
#: what pydantic strips from a number given as a string: Unicode White_Space (Python's str.strip() would also
#: strip U+001C-U+001F, which pydantic does not)
_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
#: a number in a string as Rust's f64 parser (pydantic-core's) reads it: no underscores, no other spellings
_FLOAT_STRING: Final = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)", re.I)
#: an integer in a string: a sign, then digits (Rust's integer parser), and a fraction only if all zeros ("5.0")
_INT_STRING: Final = re.compile(r"([+-]?[0-9][0-9_]*)(?:\.0+)?")
_TRUE_STRINGS: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_STRINGS: Final = frozenset({"0", "off", "f", "false", "n", "no"})


class WireError(ValueError):
    """A message that does not match the schema; `path` is where (JSON keys joined by dots)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem

    def within(self, prefix: str) -> WireError:
        """The same error, one level further out."""
        return WireError(f"{prefix}.{self.path}" if prefix and self.path else prefix or self.path, self.problem)


def _check(
    value: float | None, key: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> None:
    """Range check in pydantic's terms (NaN is outside every range)."""
    if value is None:
        return
    if ge is not None and not value >= ge:
        raise WireError(key, f"must be >= {ge}, got {value!r}")
    if gt is not None and not value > gt:
        raise WireError(key, f"must be > {gt}, got {value!r}")
    if le is not None and not value <= le:
        raise WireError(key, f"must be <= {le}, got {value!r}")


def _watts(value: float | None, key: str) -> None:
    _check(value, key, ge=0, le=_MAX_WATTS)


def _alias(name: str) -> dict[str, str]:
    """Field metadata for a key that is not plain camelCase (e.g. `smClockMHz`)."""
    return {"alias": name}


# --- the messages (see wire.py for what each field means) ---------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PodRef:
    namespace: str
    pod: str
    container: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LimitConstraints:
    min_watts: float
    max_watts: float
    default_watts: float

    def __post_init__(self) -> None:
        _watts(self.min_watts, "minWatts")
        _watts(self.max_watts, "maxWatts")
        _watts(self.default_watts, "defaultWatts")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClockRange:
    min_mhz: int = dataclasses.field(metadata=_alias("minMHz"))
    max_mhz: int = dataclasses.field(metadata=_alias("maxMHz"))

    def __post_init__(self) -> None:
        _check(self.min_mhz, "minMHz", ge=0, le=10_000)
        _check(self.max_mhz, "maxMHz", ge=0, le=10_000)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Actuation:
    result: ActuationResult
    target_watts: float | None = None
    requested_watts: float | None = None
    readback_watts: float | None = None
    locked_sm_clocks: ClockRange | None = None
    message: str | None = None
    at: dt.datetime

    def __post_init__(self) -> None:
        _watts(self.target_watts, "targetWatts")
        _watts(self.requested_watts, "requestedWatts")
        _watts(self.readback_watts, "readbackWatts")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GpuReport:
    uuid: str
    index: int
    name: str | None = None
    status: GpuStatus
    error: str | None = None
    sampled_at: dt.datetime
    power_watts: float | None = None
    average_power_watts: float | None = None
    energy_joules: float | None = None
    enforced_limit_watts: float | None = None
    limits: LimitConstraints | None = None
    temperature_celsius: float | None = None
    memory_temperature_celsius: float | None = None
    sm_clock_mhz: int | None = dataclasses.field(default=None, metadata=_alias("smClockMHz"))
    memory_clock_mhz: int | None = dataclasses.field(default=None, metadata=_alias("memoryClockMHz"))
    utilization_percent: int | None = None
    memory_utilization_percent: int | None = None
    clock_event_reasons: int | None = None
    clock_event_reason_names: list[str] | None = None
    pods: list[PodRef] = dataclasses.field(default_factory=list)
    actuation: Actuation | None = None
    capped: bool | None = None

    def __post_init__(self) -> None:
        _check(self.index, "index", ge=0)
        _watts(self.power_watts, "powerWatts")
        _watts(self.average_power_watts, "averagePowerWatts")
        _check(self.energy_joules, "energyJoules", ge=0)
        _watts(self.enforced_limit_watts, "enforcedLimitWatts")
        _check(self.sm_clock_mhz, "smClockMHz", ge=0)
        _check(self.memory_clock_mhz, "memoryClockMHz", ge=0)
        _check(self.utilization_percent, "utilizationPercent", ge=0, le=100)
        _check(self.memory_utilization_percent, "memoryUtilizationPercent", ge=0, le=100)
        _check(self.clock_event_reasons, "clockEventReasons", ge=0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentInfo:
    version: str
    backend: Literal["nvml", "sim"]
    started_at: dt.datetime
    pod: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentState:
    mode: AgentMode
    since: dt.datetime
    last_reply_at: dt.datetime | None = None
    consecutive_failures: int = 0

    def __post_init__(self) -> None:
        _check(self.consecutive_failures, "consecutiveFailures", ge=0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    code: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeReport:
    api_version: Literal["telemetry.wattwise.dev/v1"] = API_VERSION
    kind: Literal["NodeReport"] = "NodeReport"
    node: str
    agent: AgentInfo
    sequence: int
    sent_at: dt.datetime
    sample_interval_seconds: float
    state: AgentState
    gpus: list[GpuReport]
    pods_known: bool = False
    issues: list[Issue] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.sequence, "sequence", ge=0)
        _check(self.sample_interval_seconds, "sampleIntervalSeconds", gt=0)
        if not math.isfinite(self.sample_interval_seconds):  # pydantic would send null, which the operator refuses
            raise WireError("sampleIntervalSeconds", f"must be finite, got {self.sample_interval_seconds!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GpuDirective:
    enforced: bool = False
    power_limit_watts: float | None = None
    locked_sm_clocks: ClockRange | None = None
    recommended_power_limit_watts: float | None = None
    tier: Tier | None = None

    def __post_init__(self) -> None:
        _watts(self.power_limit_watts, "powerLimitWatts")
        _watts(self.recommended_power_limit_watts, "recommendedPowerLimitWatts")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FailSafePolicy:
    grace_period_seconds: float = 30.0
    limit_watts: Mapping[str, float] = dataclasses.field(default_factory=dict)
    limit_fraction: float | None = None

    def __post_init__(self) -> None:
        _check(self.grace_period_seconds, "gracePeriodSeconds", ge=1, le=3600)
        for uuid, watts in self.limit_watts.items():
            _watts(watts, f"limitWatts.{uuid}")
        _check(self.limit_fraction, "limitFraction", gt=0, le=1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FlexibleGpu:
    uuid: str
    floor_watts: float
    ceiling_watts: float
    priority: int = 0

    def __post_init__(self) -> None:
        _watts(self.floor_watts, "floorWatts")
        _watts(self.ceiling_watts, "ceilingWatts")
        _check(self.priority, "priority", ge=0, le=_MAX_PRIORITY)
        if self.floor_watts > self.ceiling_watts:
            raise WireError(
                "",
                f"flexible GPU {self.uuid!r}: floorWatts {self.floor_watts} exceeds ceilingWatts {self.ceiling_watts}",
            )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeEnvelope:
    watts: float
    protected: tuple[str, ...] = ()
    flexible: tuple[FlexibleGpu, ...] = ()
    valid_for_seconds: float = 3.0

    def __post_init__(self) -> None:
        _check(self.watts, "watts", ge=0, le=_MAX_NODE_WATTS)
        _check(self.valid_for_seconds, "validForSeconds", gt=0, le=60)
        _each_gpu_listed_once(self.protected, [g.uuid for g in self.flexible])

    def to_policy(self, node: str) -> policy_envelope.NodeEnvelope:
        """The envelope as `wattwise.policy.envelope.share` takes it."""
        return policy_envelope.NodeEnvelope(
            node=node,
            watts=self.watts,
            protected=self.protected,
            flexible=tuple(
                policy_envelope.FlexibleGpu(g.uuid, g.floor_watts, g.ceiling_watts, g.priority) for g in self.flexible
            ),
        )


def _each_gpu_listed_once(protected: Sequence[str], flexible: Sequence[str]) -> None:
    """`NodeEnvelope._each_gpu_listed_once` in wire.py: the first offending GPU, twice in `protected`, twice in
    `flexible`, then in both."""
    for name, uuids in (("protected", protected), ("flexible", flexible)):
        seen: set[str] = set()
        for uuid in uuids:
            if uuid in seen:
                raise WireError("", f"GPU {uuid!r} is listed twice in {name}")
            seen.add(uuid)
    in_flexible = set(flexible)
    for uuid in protected:
        if uuid in in_flexible:
            raise WireError("", f"GPU {uuid!r} is listed both as protected and as flexible")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReportReply:
    api_version: Literal["telemetry.wattwise.dev/v1"] = API_VERSION
    kind: Literal["ReportReply"] = "ReportReply"
    gpus: Mapping[str, GpuDirective] = dataclasses.field(default_factory=dict)
    fail_safe: FailSafePolicy | None = None
    next_report_interval_seconds: float = 1.0
    envelope: NodeEnvelope | None = None

    def __post_init__(self) -> None:
        _check(self.next_report_interval_seconds, "nextReportIntervalSeconds", ge=0.2, le=300)


# --- encoding -------------------------------------------------------------------------------------------------

_KEYS: dict[type, tuple[tuple[str, str], ...]] = {}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _keys(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) for each field of a message class, computed once per class."""
    keys = _KEYS.get(cls)
    if keys is None:
        keys = tuple((f.name, f.metadata.get("alias", _camel(f.name))) for f in dataclasses.fields(cls))
        _KEYS[cls] = keys
    return keys


def _plain(value: Any) -> Any:
    """JSON-ready form: camelCase keys, None (and non-finite floats) left out, enums as values, UTC as Z."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if dataclasses.is_dataclass(value):
        out = {}
        for name, key in _keys(type(value)):
            item = getattr(value, name)
            if item is None or (isinstance(item, float) and not math.isfinite(item)):
                continue
            out[key] = _plain(item)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def encode(message: object) -> bytes:
    """A message (any dataclass above) as sent: compact JSON, camelCase keys, unset optional fields left out."""
    return json.dumps(_plain(message), separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


# --- decoding (pydantic's lax JSON mode, reproduced for the types a ReportReply uses) ------------------------

Parse = Callable[[object, str], T]


def _load(data: bytes) -> object:
    """JSON as jiter reads it: UTF-8 only, NaN/Infinity allowed, no lone surrogates, at most 200 levels deep,
    at most 4,300 digits before a number's decimal point."""
    try:
        document = json.loads(data.decode("utf-8"), parse_int=_int_literal, parse_float=_float_literal)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError("", f"not valid JSON: {exc}") from None
    _check_document(document, 0)
    return document


def _check_digits(text: str) -> None:
    digits = len(re.split(r"[.eE]", text.lstrip("-"), maxsplit=1)[0])
    if digits > _MAX_DIGITS:
        raise ValueError(f"number out of range ({digits} digits before the decimal point)")


def _int_literal(text: str) -> int:
    _check_digits(text)
    return int(text)


def _float_literal(text: str) -> float:
    _check_digits(text)
    return float(text)


def _check_document(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise WireError("", f"not valid JSON: nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, list):
        for item in value:
            _check_document(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_document(item, depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError("", "not valid JSON: a string holds a lone surrogate escape") from None


def _object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise WireError(path, f"must be an object, got {type(value).__name__}")
    return value


def _get(obj: dict[str, object], key: str, path: str, parse: Parse[T], default: T) -> T:
    """A field by its camelCase key, else by its snake_case name (pydantic's populate_by_name), else default."""
    for name in (key, _snake(key)):
        if name in obj:
            return parse(obj[name], f"{path}.{key}" if path else key)
    return default


def _need(obj: dict[str, object], key: str, path: str, parse: Parse[T]) -> T:
    """A required field, found as `_get` finds it."""
    for name in (key, _snake(key)):
        if name in obj:
            return parse(obj[name], f"{path}.{key}" if path else key)
    raise WireError(f"{path}.{key}" if path else key, "required")


@functools.cache
def _snake(key: str) -> str:
    """The field's Python name, which pydantic also accepts (populate_by_name)."""
    return {"minMHz": "min_mhz", "maxMHz": "max_mhz"}.get(key) or re.sub(r"([A-Z])", r"_\1", key).lower()


def _optional(parse: Parse[T]) -> Parse[T | None]:
    def parse_optional(value: object, path: str) -> T | None:
        return None if value is None else parse(value, path)

    return parse_optional


def _bool(value: object, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE_STRINGS or lowered in _FALSE_STRINGS:
            return lowered in _TRUE_STRINGS
    raise WireError(path, f"must be a boolean, got {value!r}")


def _float(value: object, path: str) -> float:
    if isinstance(value, int | float):  # bool included, as in pydantic's lax mode
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        number = _float_from_string(value)
        if number is not None:
            return number
        raise WireError(path, f"must be a number, got {value!r}")
    raise WireError(path, f"must be a number, got {type(value).__name__}")


def _float_from_string(text: str) -> float | None:
    """pydantic-core's reading: the text trimmed, else (only if that fails) the untrimmed text without underscores."""
    for candidate in (text.strip(_WHITESPACE), _without_underscores(text) if "_" in text else None):
        if candidate is not None and _FLOAT_STRING.fullmatch(candidate):
            return float(candidate)
    return None


def _without_underscores(text: str) -> str | None:
    """Underscores removed, or None where Python would refuse them: leading, trailing or doubled."""
    if text.startswith("_") or text.endswith("_") or "__" in text:
        return None
    return text.replace("_", "")


def _int(value: object, path: str) -> int:
    if isinstance(value, int):  # bool included, as in pydantic's lax mode
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise WireError(path, f"must be a whole number, got {value!r}")
    if isinstance(value, str):
        number = _int_from_string(value)
        if number is not None:
            return number
        raise WireError(path, f"must be a whole number, got {value!r}")
    raise WireError(path, f"must be a whole number, got {type(value).__name__}")


def _int_from_string(text: str) -> int | None:
    """pydantic-core's reading: trimmed, at most 4,300 characters, an all-zero fraction dropped, then underscores."""
    trimmed = text.strip(_WHITESPACE)
    match = _INT_STRING.fullmatch(trimmed)
    if match is None or len(trimmed) > _MAX_DIGITS:
        return None
    digits = _without_underscores(match.group(1))
    if digits is None or not re.fullmatch(r"[+-]?[0-9]+", digits):
        return None
    return int(digits)


def _str(value: object, path: str) -> str:
    if isinstance(value, str):  # JSON mode: no coercion of numbers to text
        return value
    raise WireError(path, f"must be a string, got {type(value).__name__}")


def _literal(*allowed: str) -> Parse[Any]:
    def parse_literal(value: object, path: str) -> Any:
        if isinstance(value, str) and value in allowed:
            return value
        raise WireError(path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")

    return parse_literal


def _mapping(parse: Parse[T]) -> Parse[dict[str, T]]:
    def parse_mapping(value: object, path: str) -> dict[str, T]:
        return {key: parse(item, f"{path}.{key}") for key, item in _object(value, path).items()}

    return parse_mapping


def _tuple(parse: Parse[T]) -> Parse[tuple[T, ...]]:
    """A JSON array (pydantic's list), as a tuple: the messages are frozen."""

    def parse_tuple(value: object, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise WireError(path, f"must be an array, got {type(value).__name__}")
        return tuple(parse(item, f"{path}.{i}") for i, item in enumerate(value))

    return parse_tuple


def _build(cls: Callable[..., T], path: str, **fields: Any) -> T:
    """Construct a message; its range checks report where in the document they failed."""
    try:
        return cls(**fields)
    except WireError as exc:
        raise exc.within(path) from None


def _clock_range(value: object, path: str) -> ClockRange:
    obj = _object(value, path)
    return _build(
        ClockRange,
        path,
        min_mhz=_need(obj, "minMHz", path, _int),
        max_mhz=_need(obj, "maxMHz", path, _int),
    )


def _directive(value: object, path: str) -> GpuDirective:
    obj = _object(value, path)
    return _build(
        GpuDirective,
        path,
        enforced=_get(obj, "enforced", path, _bool, False),
        power_limit_watts=_get(obj, "powerLimitWatts", path, _optional(_float), None),
        locked_sm_clocks=_get(obj, "lockedSmClocks", path, _optional(_clock_range), None),
        recommended_power_limit_watts=_get(obj, "recommendedPowerLimitWatts", path, _optional(_float), None),
        tier=_get(obj, "tier", path, _optional(_literal("critical", "standard", "tolerant")), None),
    )


def _fail_safe(value: object, path: str) -> FailSafePolicy:
    obj = _object(value, path)
    return _build(
        FailSafePolicy,
        path,
        grace_period_seconds=_get(obj, "gracePeriodSeconds", path, _float, 30.0),
        limit_watts=_get(obj, "limitWatts", path, _mapping(_float), dict[str, float]()),
        limit_fraction=_get(obj, "limitFraction", path, _optional(_float), None),
    )


def _flexible(value: object, path: str) -> FlexibleGpu:
    obj = _object(value, path)
    return _build(
        FlexibleGpu,
        path,
        uuid=_need(obj, "uuid", path, _str),
        floor_watts=_need(obj, "floorWatts", path, _float),
        ceiling_watts=_need(obj, "ceilingWatts", path, _float),
        priority=_get(obj, "priority", path, _int, 0),
    )


def _envelope(value: object, path: str) -> NodeEnvelope:
    obj = _object(value, path)
    return _build(
        NodeEnvelope,
        path,
        watts=_need(obj, "watts", path, _float),
        protected=_get(obj, "protected", path, _tuple(_str), tuple[str, ...]()),
        flexible=_get(obj, "flexible", path, _tuple(_flexible), tuple[FlexibleGpu, ...]()),
        valid_for_seconds=_get(obj, "validForSeconds", path, _float, 3.0),
    )


def decode_reply(data: bytes) -> ReportReply:
    """The operator's reply, validated as `wire.ReportReply.model_validate_json` would; WireError if it is not one."""
    obj = _object(_load(data), "")
    return _build(
        ReportReply,
        "",
        api_version=_get(obj, "apiVersion", "", _literal(API_VERSION), API_VERSION),
        kind=_get(obj, "kind", "", _literal("ReportReply"), "ReportReply"),
        gpus=_get(obj, "gpus", "", _mapping(_directive), dict[str, GpuDirective]()),
        fail_safe=_get(obj, "failSafe", "", _optional(_fail_safe), None),
        next_report_interval_seconds=_get(obj, "nextReportIntervalSeconds", "", _float, 1.0),
        envelope=_get(obj, "envelope", "", _optional(_envelope), None),
    )
