"""The agent's pydantic-free codec (`telemetry.messages`) against the contract (`telemetry.wire`, pydantic).

- Same shape: every message has the same fields, with the same JSON keys, as its pydantic model.
- Reports: any message built here (random values, in range and out) is refused exactly when pydantic would
  refuse it (or would send JSON the operator refuses: an infinite `sampleIntervalSeconds` goes out as null), and
  otherwise reaches the operator's model with the values pydantic itself would have sent.
- Replies: for documents generated from the pydantic `ReportReply` model, then mutated (lax spellings such as
  "5" or "yes", snake_case keys, wrong types, out-of-range numbers, missing and unknown keys) and for malformed
  JSON, `decode_reply` accepts exactly what `ReportReply.model_validate_json` accepts, with the same values.
- The envelope's cross-field rules (a floor above its ceiling, a GPU listed twice or both protected and flexible)
  refuse with the path and message of pydantic's model validators.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node_agent.conftest import UUIDS
from tests.node_agent.fakes import FakeGpu
from wattwise.node_agent.agent import NodeAgent
from wattwise.policy import envelope as policy_envelope
from wattwise.telemetry import messages, wire
from wattwise.telemetry.vocabulary import AgentMode

#: every message class and its pydantic model (the contract)
PAIRS: dict[type, type[pydantic.BaseModel]] = {
    cls: getattr(wire, cls.__name__)
    for cls in (
        messages.PodRef,
        messages.LimitConstraints,
        messages.ClockRange,
        messages.Actuation,
        messages.GpuReport,
        messages.AgentInfo,
        messages.AgentState,
        messages.Issue,
        messages.NodeReport,
        messages.GpuDirective,
        messages.FailSafePolicy,
        messages.FlexibleGpu,
        messages.NodeEnvelope,
        messages.ReportReply,
    )
}

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _canonical(value: object) -> str:
    """Values as JSON text with types kept apart (5 vs 5.0) and keys sorted."""
    return json.dumps(value, sort_keys=True, default=str)


# --- same shape ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PAIRS, ids=lambda c: c.__name__)
def test_same_fields_and_keys_as_the_pydantic_model(cls: type) -> None:
    model = PAIRS[cls]
    ours = {f.name: f.metadata.get("alias", messages._camel(f.name)) for f in dataclasses.fields(cls)}
    theirs = {name: field.alias for name, field in model.model_fields.items()}
    assert ours == theirs
    required = {f.name for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING}
    assert required == {name for name, field in model.model_fields.items() if field.is_required()}


def test_every_message_of_the_wire_module_is_mirrored() -> None:
    models = {
        name
        for name, value in vars(wire).items()
        if isinstance(value, type) and issubclass(value, wire.WireModel) and value is not wire.WireModel
    }
    assert models == {cls.__name__ for cls in PAIRS}


# --- reports: built here, read by the operator's model ----------------------------------------------------------

_FLOATS = st.one_of(
    st.floats(min_value=-1, max_value=10_001),
    st.sampled_from([0.0, -0.0, 0.19, 0.2, 1.0, 100.0, 300.0, 300.5, 3600.0, 3600.5, 10_000.0, 10_000.5, -1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2, max_value=10_002),
)
_INTS = st.one_of(st.integers(min_value=-2, max_value=10_002), st.sampled_from([0, 100, 101, -1, 10_000, 10_001]))
_TIMES = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC))


def _plain(tp: Any) -> st.SearchStrategy[Any]:
    """Python values for a message field's type, messages as dicts (what pydantic's model_validate takes)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*[st.none() if a is type(None) else _plain(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (list, tuple):  # tuple[X, ...]: a JSON array as well
        return st.lists(_plain(args[0]), max_size=2)
    if origin in (dict, Mapping):
        return st.dictionaries(st.text(max_size=4), _plain(args[1]), max_size=2)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = dataclasses.fields(tp)
        required = {
            f.name: _plain(hints[f.name]) for f in fields if f.default is f.default_factory is dataclasses.MISSING
        }
        optional = {f.name: _plain(hints[f.name]) for f in fields if f.name not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    simple: dict[Any, st.SearchStrategy[Any]] = {
        float: _FLOATS,
        int: _INTS,
        bool: st.booleans(),
        str: st.text(max_size=6),
        dt.datetime: _TIMES,
    }
    return simple[tp]


def _build(tp: Any, value: Any) -> Any:
    """The message(s) a plain value describes, built with the message classes (which check ranges)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (types.UnionType, typing.Union):
        return _build(next(a for a in args if a is not type(None)), value)
    if origin is list:
        return [_build(args[0], item) for item in value]
    if origin is tuple:
        return tuple(_build(args[0], item) for item in value)
    if origin in (dict, Mapping):
        return {key: _build(args[1], item) for key, item in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{name: _build(hints[name], item) for name, item in value.items()})
    return value


@pytest.mark.parametrize("cls", PAIRS, ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_a_message_is_refused_or_read_exactly_as_pydantic_would(cls: type, data: st.DataObject) -> None:
    plain = data.draw(_plain(cls))
    model = PAIRS[cls]
    try:
        # what the operator would read had pydantic built it (a non-finite reading is sent as null)
        theirs = model.model_validate_json(
            model.model_validate(plain).model_dump_json(by_alias=True, exclude_none=True)
        )
    except pydantic.ValidationError:
        with pytest.raises(messages.WireError):
            _build(cls, plain)
        return
    ours = model.model_validate_json(messages.encode(_build(cls, plain)))
    assert _canonical(ours.model_dump()) == _canonical(theirs.model_dump())


def test_the_agents_own_report_reads_back_unchanged(fake_agent: Callable[..., tuple[NodeAgent, Any, Any]]) -> None:
    agent, _, _ = fake_agent(
        [FakeGpu(UUIDS[0]), FakeGpu(UUIDS[1]), FakeGpu(UUIDS[2], errors={"power": pynvml.NVML_ERROR_GPU_IS_LOST})]
    )
    clocks = messages.ClockRange(min_mhz=900, max_mhz=1400)
    reply = messages.ReportReply(
        gpus={UUIDS[0]: messages.GpuDirective(enforced=True, power_limit_watts=400, locked_sm_clocks=clocks)}
    )
    agent.link.enabled = True
    agent.link.succeeded(agent.clock.monotonic(), reply, 1.0)
    agent.tick()
    agent.tick()  # the second tick's snapshot holds the first one's actuation
    report = agent.build_report(list(agent.snapshot.readings), {UUIDS[0]: 351.5}, agent.clock.monotonic())
    assert report.state.mode is AgentMode.CONNECTED and report.gpus[0].actuation is not None
    assert report.gpus[0].actuation.locked_sm_clocks == clocks and report.gpus[2].status == "lost"
    data = messages.encode(report)
    parsed = wire.NodeReport.model_validate_json(data)
    assert parsed.model_dump() == dataclasses.asdict(report)
    assert json.loads(parsed.to_json()) == json.loads(data)  # the same document, key for key


def test_out_of_range_readings_are_refused_with_the_field_named() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(messages.WireError, match="powerWatts: must be <= 10000"):
        messages.GpuReport(uuid="u", index=0, status=wire.GpuStatus.OK, sampled_at=now, power_watts=12_000.0)
    with pytest.raises(messages.WireError, match="utilizationPercent: must be <= 100"):
        messages.GpuReport(uuid="u", index=0, status=wire.GpuStatus.OK, sampled_at=now, utilization_percent=101)
    with pytest.raises(messages.WireError, match="limitFraction: must be > 0"):
        messages.FailSafePolicy(limit_fraction=0.0)


def test_unknown_readings_are_left_out() -> None:
    now = dt.datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=dt.UTC)
    gpu = messages.GpuReport(
        uuid="u", index=0, status=wire.GpuStatus.OK, sampled_at=now, temperature_celsius=math.nan, power_watts=None
    )
    assert json.loads(messages.encode(gpu)) == {
        "uuid": "u",
        "index": 0,
        "status": "ok",
        "sampledAt": "2026-01-01T00:00:00.250000Z",
        "pods": [],
    }


# --- replies: decoded here as pydantic decodes them ------------------------------------------------------------


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """A type without its Annotated wrappers, and the constraints those carried (annotated_types objects)."""
    constraints: list[Any] = []
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        for item in extra:
            constraints.extend(item.metadata if isinstance(item, pydantic.fields.FieldInfo) else [item])
    return tp, constraints


def _bounds(constraints: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in constraints:
        for attr, key in (("ge", "min_value"), ("gt", "min_value"), ("le", "max_value"), ("lt", "max_value")):
            if hasattr(c, attr):
                out[key] = getattr(c, attr)
                if attr in ("gt", "lt"):
                    out["exclude_" + key.split("_")[0]] = True
    return out


def _from_model(tp: Any, constraints: list[Any] = []) -> st.SearchStrategy[Any]:  # noqa: B006 - never mutated
    """Valid JSON values for a pydantic field type, read off the model (keys by alias or, sometimes, by name)."""
    tp, more = _unwrap(tp)
    constraints = [*constraints, *more]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*[st.none() if a is type(None) else _from_model(a, constraints) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), _from_model(args[1]), max_size=3)
    if origin is list:
        return st.lists(_from_model(args[0]), max_size=3)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return _model_document(tp)
    if tp is float:
        bounds = _bounds(constraints)
        ints = st.integers(
            min_value=math.ceil(bounds.get("min_value", -1e6) + (1e-9 if bounds.get("exclude_min") else 0)),
            max_value=math.floor(bounds.get("max_value", 1e6)),
        )
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False, **bounds), ints)
    if tp is int:
        bounds = _bounds(constraints)
        return st.integers(min_value=bounds.get("min_value"), max_value=bounds.get("max_value"))
    if tp is bool:
        return st.booleans()
    if tp is str:
        return st.text(max_size=6)
    raise AssertionError(f"no strategy for {tp!r}: extend _from_model")


@st.composite
def _model_document(draw: st.DrawFn, model: type[pydantic.BaseModel]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        if not field.is_required() and draw(st.booleans()):
            continue
        key = keys[name] = draw(st.sampled_from([field.alias or name, name]))
        doc[key] = draw(_from_model(field.annotation, list(field.metadata)))
    # the cross-field rules: a floor never above its ceiling; each GPU listed once in protected and flexible together
    if model is wire.FlexibleGpu:
        floor, ceiling = keys["floor_watts"], keys["ceiling_watts"]
        doc[floor], doc[ceiling] = sorted((doc[floor], doc[ceiling]))
    if model is wire.NodeEnvelope:
        seen: set[str] = set()
        if "protected" in doc:
            doc["protected"] = [uuid for uuid in doc["protected"] if _first_time(uuid, seen)]
        if "flexible" in doc:
            doc["flexible"] = [gpu for gpu in doc["flexible"] if _first_time(gpu["uuid"], seen)]
    return doc


def _first_time(uuid: str, seen: set[str]) -> bool:
    """Whether `uuid` is new to `seen`, which it joins."""
    new = uuid not in seen
    seen.add(uuid)
    return new


#: numbers in strings, where pydantic's lax mode has its own rules (whitespace, underscores, signs, fractions)
_NUMBER_SPELLINGS = [
    *[" 5 ", "5.0", "5.5", "5.", ".5", "+5", "-0", "-0.0", "00", "1e3", "1E2", "0x10", "0b1", "+.5", "-.5e-1", "."],
    *["1_0", "1__0", "_1", "1_", "0_1", "0_1 ", " 1_0", "1_0\t", "1_0.0", "1_0.0 ", "1.0_0", "0.0_1", "1_e5", "1e_5"],
    *["1e1_0", "1_.0", "1._0", "+_5", "-_0", "+5_0", "+0_5", "+_5.0", "+_", "_", "1_ ", "+-1", "--1", "e5", "1e"],
    *["in_f", "i_nf", "inf", "+inf", "-inf", "nan", "+nan", "NaN", "Infinity", "-Infinity", "1\u00a0", "\x1c1"],
    *["\u20035", "5\u2003", "5\x1c", "\x855", "\x0b5", "\u0665", "\uff11", "9" * 30, "9" * 4300, "9" * 4301],
    *[" " + "9" * 4299 + " ", "9" * 4299 + ".0", "1" + "_1" * 2000],
]

_NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.integers(),
    st.floats(),
    st.floats(min_value=-1, max_value=12_000),
    st.sampled_from(
        [
            *["", "yes", "No", "ON", "t", "F", "1", "0", "2", "true ", "critical", "Critical", "ReportReply"],
            wire.API_VERSION,
            "telemetry.wattwise.dev/v2",
        ]
    ),
    st.text(alphabet="0123456789._eE+- \tinfaty\u2003\x1c", max_size=8),
    st.sampled_from(_NUMBER_SPELLINGS),
    st.lists(st.integers(), max_size=2),
    st.lists(st.sampled_from(["GPU-1", "", "5", 5, None]), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.fixed_dictionaries(
        {"uuid": st.sampled_from(["GPU-1", 1])},
        optional={k: st.sampled_from([0, 150, 300.5, "200", -1, 10_001]) for k in ("floorWatts", "ceilingWatts")},
    ),
)


def _slots(value: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (object, key) and (array, index) in a document, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((value, key))
            _slots(item, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index))
            _slots(item, found)
    return found


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def _list_again(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    """List a GPU the envelope names (if it has one) a second time: in `protected`, or in `flexible` as a copy."""
    envelope = doc.get("envelope")
    if not isinstance(envelope, dict):
        return
    lists = {key: envelope[key] for key in ("protected", "flexible") if isinstance(envelope.get(key), list)}
    named = [*lists.get("protected", []), *[g.get("uuid") for g in lists.get("flexible", []) if isinstance(g, dict)]]
    if not named:
        return
    uuid = draw(st.sampled_from(named))
    key = draw(st.sampled_from(sorted(lists)))
    if key == "protected":
        lists[key].insert(draw(st.integers(min_value=0, max_value=len(lists[key]))), uuid)
    else:
        lists[key].append({"uuid": uuid, "floorWatts": 100, "ceilingWatts": 200})


@st.composite
def _replies(draw: st.DrawFn) -> bytes:
    """A reply generated from the pydantic model, then (usually) mutated a few times."""
    doc = draw(_model_document(wire.ReportReply))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        slots = _slots(doc, [])
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename", "add", "list-again"]))
        if action == "list-again":
            _list_again(draw, doc)
            continue
        if action == "add" or not slots:
            target = draw(st.sampled_from([doc, *[obj[key] for obj, key in slots if isinstance(obj[key], dict)]]))
            keys = ["extra", "minMHz", "enforced", "gracePeriodSeconds", "u", "envelope", "floorWatts", "watts"]
            target[draw(st.sampled_from(keys))] = draw(_NASTY)
            continue
        obj, key = draw(st.sampled_from(slots))
        if action == "replace" or (action == "rename" and isinstance(obj, list)):
            obj[key] = draw(_NASTY)
        elif action == "delete":
            del obj[key]
        else:
            obj[_snake(key)] = obj.pop(key)
    return json.dumps(doc).encode()


def _pydantic_reads(data: bytes) -> str | None:
    try:
        return _canonical(wire.ReportReply.model_validate_json(data).model_dump())
    except pydantic.ValidationError:
        return None


def _we_read(data: bytes) -> str | None:
    try:
        return _canonical(dataclasses.asdict(messages.decode_reply(data)))
    except messages.WireError:
        return None


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_replies())
def test_a_reply_is_accepted_exactly_when_pydantic_accepts_it(data: bytes) -> None:
    assert _we_read(data) == _pydantic_reads(data)


@SETTINGS
@given(doc=_model_document(wire.ReportReply))
def test_every_reply_the_operator_can_send_is_accepted(doc: dict[str, Any]) -> None:
    reply = wire.ReportReply.model_validate(doc)
    data = reply.to_json()
    assert _we_read(data) is not None and _we_read(data) == _pydantic_reads(data)


@pytest.mark.parametrize("spelling", _NUMBER_SPELLINGS)
@pytest.mark.parametrize(
    "template",
    [
        '{{"gpus": {{"u": {{"powerLimitWatts": {}}}}}}}',  # a float
        '{{"gpus": {{"u": {{"lockedSmClocks": {{"minMHz": {}, "maxMHz": 1}}}}}}}}',  # an integer
        '{{"gpus": {{"u": {{"enforced": {}}}}}}}',  # a boolean
        '{{"nextReportIntervalSeconds": {}}}',
        '{{"envelope": {{"watts": {}}}}}',
        '{{"envelope": {{"watts": 1, "flexible": [{{"uuid": "u", "floorWatts": 1, "ceilingWatts": 5, '
        '"priority": {}}}]}}}}',
        '{{"envelope": {{"watts": 1, "flexible": [{{"uuid": "u", "floorWatts": 5, "ceilingWatts": {}}}]}}}}',
    ],
    ids=["float", "int", "bool", "interval", "node-watts", "priority", "ceiling"],
)
def test_numbers_in_strings_are_read_as_pydantic_reads_them(spelling: str, template: str) -> None:
    data = template.format(json.dumps(spelling)).encode()
    assert _we_read(data) == _pydantic_reads(data)


def _nested(depth: int, leaf: str = "1") -> bytes:
    return ('{"x": ' + '{"a": ' * depth + leaf + "}" * depth + "}").encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b'"ReportReply"',
        b"{}",
        b" {} \n",
        b"{}x",
        b"{,}",
        b'{"a": 1,}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'{"x": "\xff"}',  # not UTF-8
        '{"x": "é"}'.encode("utf-16"),
        b'{"x": "\\ud800"}',  # a lone surrogate, in a field nobody reads
        b'{"\\udc00": 1}',
        b'{"x": "\\ud83d\\ude00"}',  # a proper pair
        b'{"x": "a\x01"}',  # a raw control character
        b'{"gpus": {"\\u0000": {}}}',
        b'{"x": NaN, "y": Infinity, "z": -Infinity}',
        b'{"x": nan}',
        b'{"x": 01}',
        b'{"x": .5}',
        b'{"x": 1e400}',
        *[
            b'{"x": ' + sign + b"9" * n + tail + b"}"
            for n in (4300, 4301)
            for sign in (b"", b"-")
            for tail in (b"", b".5", b"e-9000")
        ],
        b'{"x": 0.' + b"9" * 5000 + b"}",
        b'{"nextReportIntervalSeconds": ' + b"9" * 5000 + b"}",
        b'{"nextReportIntervalSeconds": 1e400}',
        b'{"nextReportIntervalSeconds": -1e400}',
        b'{"gpus": {"u": {"lockedSmClocks": {"minMHz": 1e20, "maxMHz": 1}}}}',
        b'{"gpus": {"u": {}}, "gpus": {}}',  # duplicate keys: the last wins
        b'{"gpus": {}, "gpus": {"u": {"enforced": "on"}}}',
        b'{"gpus": {"u": {"power_limit_watts": 7, "powerLimitWatts": null}}}',  # the alias wins
        b'{"gpus": {"u": {"power_limit_watts": "x", "powerLimitWatts": 5}}}',
        b'{"gpus": {"u": {"power_limit_watts": 5, "powerLimitWatts": "x"}}}',
        b'{"api_version": "telemetry.wattwise.dev/v1", "kind": "ReportReply"}',
        _nested(199),
        _nested(200),
        _nested(201),
        _nested(199, "[]"),
        _nested(200, "[]"),
        b'{"x": ' + b"[" * 200 + b"]" * 200 + b"}",
        b'{"x": ' + b"[" * 201 + b"]" * 201 + b"}",
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_malformed_json_is_refused_as_pydantic_refuses_it(data: bytes) -> None:
    assert _we_read(data) == _pydantic_reads(data)


def test_a_refused_reply_names_the_field() -> None:
    with pytest.raises(messages.WireError, match=r"^gpus\.GPU-1\.powerLimitWatts: must be <= 10000"):
        messages.decode_reply(b'{"gpus": {"GPU-1": {"enforced": true, "powerLimitWatts": 12000}}}')
    with pytest.raises(messages.WireError, match=r"^gpus\.GPU-1\.lockedSmClocks\.maxMHz: required"):
        messages.decode_reply(b'{"gpus": {"GPU-1": {"lockedSmClocks": {"minMHz": 900}}}}')
    with pytest.raises(messages.WireError, match=r"^apiVersion: must be one of"):
        messages.decode_reply(b'{"apiVersion": "telemetry.wattwise.dev/v2"}')
    with pytest.raises(messages.WireError, match="not valid JSON"):
        messages.decode_reply(b"{")


_FLEX = '{{"uuid": "GPU-2", "floorWatts": {floor}, "ceilingWatts": {ceiling}{more}}}'


def _envelope(
    *, watts: str = "1200", protected: str = '["GPU-1"]', flexible: str = "", valid: str = "", extra: str = ""
) -> bytes:
    fields = [f'"watts": {watts}', f'"protected": {protected}']
    fields += [f'"flexible": {flexible}'] if flexible else []
    fields += [f'"validForSeconds": {valid}'] if valid else []
    return ('{"envelope": {' + ", ".join(fields + ([extra] if extra else [])) + "}}").encode()


@pytest.mark.parametrize(
    "data",
    [
        _envelope(),
        _envelope(flexible="[" + _FLEX.format(floor=200, ceiling=450, more=', "priority": 3') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=300, ceiling=300, more="") + "]"),  # floor == ceiling
        _envelope(flexible="[" + _FLEX.format(floor=300.5, ceiling=300, more="") + "]"),  # floor above ceiling
        _envelope(flexible="[" + _FLEX.format(floor='"400"', ceiling='"350"', more="") + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=0, ceiling=10_000, more=', "priority": 1000') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=0, ceiling=10_000.5, more="") + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=-1, ceiling=5, more="") + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": 1001') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": -1') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": 2.0') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": 2.5') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": true') + "]"),
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more=', "priority": null') + "]"),
        _envelope(flexible='[{"uuid": "GPU-2", "floorWatts": 1}]'),
        _envelope(flexible='[{"uuid": 2, "floorWatts": 1, "ceilingWatts": 2}]'),
        _envelope(flexible='[{"floor_watts": 1, "ceiling_watts": 2, "uuid": "u"}]'),
        _envelope(flexible='{"GPU-2": {"floorWatts": 1, "ceilingWatts": 2}}'),
        _envelope(flexible="[null]"),
        _envelope(flexible="null"),
        _envelope(protected="null"),
        _envelope(protected='"GPU-1"'),
        _envelope(protected='["GPU-1", 2]'),
        _envelope(protected='{"GPU-1": true}'),
        _envelope(protected="[]"),
        _envelope(protected='["GPU-1", "GPU-1"]'),  # a GPU listed twice in protected
        _envelope(protected='["GPU-1", "gpu-1", "GPU-1 "]'),  # three GPUs: UUIDs are compared exactly
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more="") + "]"),
        _envelope(flexible="[" + ", ".join([_FLEX.format(floor=1, ceiling=5, more="")] * 2) + "]"),  # twice
        _envelope(flexible="[" + _FLEX.format(floor=1, ceiling=5, more="").replace("GPU-2", "GPU-1") + "]"),  # both
        _envelope(flexible="[" + _FLEX.format(floor='"1"', ceiling=5, more="").replace("GPU-2", "GPU-1") + "]"),
        _envelope(protected='["GPU-1", "GPU-1"]', flexible="[" + _FLEX.format(floor=5, ceiling=1, more="") + "]"),
        _envelope(protected='["GPU-1", "GPU-1"]', watts="-1"),
        _envelope(protected='["GPU-1", "GPU-1", 2]'),
        _envelope(extra='"protected": ["GPU-2"], "flexible": [{"uuid": "GPU-2", "floorWatts": 1, "ceilingWatts": 5}]'),
        _envelope(watts="1000000"),
        _envelope(watts="1000000.5"),
        _envelope(watts="-0.0"),
        _envelope(watts="NaN"),
        _envelope(watts='"1_200"'),
        _envelope(watts="null"),
        _envelope(valid="0"),
        _envelope(valid="0.001"),
        _envelope(valid="60"),
        _envelope(valid="60.0001"),
        _envelope(valid="null"),
        _envelope(valid='"3"'),
        _envelope(extra='"valid_for_seconds": 5'),
        _envelope(extra='"valid_for_seconds": 5, "validForSeconds": 7'),
        b'{"envelope": null}',
        b'{"envelope": []}',
        b'{"envelope": {}}',
        b'{"envelope": "none"}',
    ],
)
def test_envelopes_are_read_as_pydantic_reads_them(data: bytes) -> None:
    assert _we_read(data) == _pydantic_reads(data)


def test_a_floor_above_its_ceiling_is_refused_with_the_gpu_named() -> None:
    data = _envelope(flexible="[" + _FLEX.format(floor=400, ceiling=350, more="") + "]")
    with pytest.raises(
        messages.WireError, match=r"^envelope\.flexible\.0: flexible GPU 'GPU-2': floorWatts 400.0 exceeds"
    ):
        messages.decode_reply(data)
    with pytest.raises(pydantic.ValidationError, match=r"floorWatts 400\.0 exceeds ceilingWatts 350\.0"):
        wire.ReportReply.model_validate_json(data)
    with pytest.raises(messages.WireError, match="exceeds ceilingWatts"):
        messages.FlexibleGpu(uuid="u", floor_watts=2, ceiling_watts=1)
    with pytest.raises(messages.WireError, match=r"^watts: must be <= 1000000"):
        messages.NodeEnvelope(watts=2e6)
    with pytest.raises(messages.WireError, match=r"^validForSeconds: must be > 0"):
        messages.NodeEnvelope(watts=1, valid_for_seconds=0)


def _pydantic_verdict(data: bytes) -> str:
    """The values pydantic reads, or its first error as `WireError` words it (path: problem)."""
    try:
        return _canonical(wire.ReportReply.model_validate_json(data).model_dump())
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg'].removeprefix('Value error, ')}"


def _our_verdict(data: bytes) -> str:
    try:
        return _canonical(dataclasses.asdict(messages.decode_reply(data)))
    except messages.WireError as exc:
        return str(exc)


_FEW_GPUS = st.sampled_from(["GPU-1", "GPU-2", "GPU-3"])


@st.composite
def _crowded_envelopes(draw: st.DrawFn) -> bytes:
    """Replies whose envelope lists three GPUs any number of times, in protected and flexible, now and then with a
    floor above its ceiling: every rule of the envelope that spans its fields, alone and together."""
    flexible = st.fixed_dictionaries(
        {"uuid": _FEW_GPUS, "floorWatts": st.integers(0, 400), "ceilingWatts": st.integers(300, 700)},
        optional={"priority": st.integers(0, 3)},
    )
    envelope = {
        "watts": draw(st.integers(0, 3000)),
        "protected": draw(st.lists(_FEW_GPUS, max_size=3)),
        "flexible": draw(st.lists(flexible, max_size=4)),
    }
    return json.dumps({"envelope": envelope}).encode()


@SETTINGS
@given(data=_crowded_envelopes())
def test_envelope_rules_refuse_with_pydantics_path_and_message(data: bytes) -> None:
    assert _our_verdict(data) == _pydantic_verdict(data)


@pytest.mark.parametrize(
    ("protected", "flexible", "error"),
    [
        (["GPU-3", "GPU-1", "GPU-3"], [], "GPU 'GPU-3' is listed twice in protected"),
        (["GPU-1"], ["GPU-3", "GPU-2", "GPU-3"], "GPU 'GPU-3' is listed twice in flexible"),
        (["GPU-1", "GPU-3"], ["GPU-2", "GPU-3"], "GPU 'GPU-3' is listed both as protected and as flexible"),
        # the first rule broken, in this order: twice in protected, twice in flexible, both
        (["GPU-1", "GPU-2", "GPU-2"], ["GPU-1", "GPU-1"], "GPU 'GPU-2' is listed twice in protected"),
        (["GPU-1"], ["GPU-1", "GPU-2", "GPU-2"], "GPU 'GPU-2' is listed twice in flexible"),
        (["GPU-2", "GPU-1"], ["GPU-1", "GPU-2"], "GPU 'GPU-2' is listed both as protected and as flexible"),
    ],
)
def test_a_gpu_listed_twice_or_in_both_lists_is_refused_with_the_gpu_named(
    protected: list[str], flexible: list[str], error: str
) -> None:
    document = {
        "watts": 1500,
        "protected": protected,
        "flexible": [{"uuid": uuid, "floorWatts": 200, "ceilingWatts": 450} for uuid in flexible],
    }
    data = json.dumps({"envelope": document}).encode()
    with pytest.raises(messages.WireError, match=f"^envelope: {re.escape(error)}$") as refused:
        messages.decode_reply(data)
    assert refused.value.path == "envelope" and refused.value.problem == error
    assert _pydantic_verdict(data) == f"envelope: {error}"
    with pytest.raises(messages.WireError, match=f"^{re.escape(error)}$"):  # built directly: no path
        messages.NodeEnvelope(
            watts=1500,
            protected=tuple(protected),
            flexible=tuple(messages.FlexibleGpu(uuid=u, floor_watts=200, ceiling_watts=450) for u in flexible),
        )


def test_a_decoded_envelope_is_shared_as_the_policy_shares_it() -> None:
    flexible = [
        _FLEX.format(floor=200, ceiling=500, more=', "priority": 1').replace("GPU-2", "GPU-2"),
        _FLEX.format(floor=200, ceiling=500, more="").replace("GPU-2", "GPU-3"),
    ]
    reply = messages.decode_reply(_envelope(watts="1500", flexible="[" + ", ".join(flexible) + "]"))
    assert reply.envelope is not None
    envelope = reply.envelope.to_policy("n1")
    assert envelope == policy_envelope.NodeEnvelope(
        node="n1",
        watts=1500.0,
        protected=("GPU-1",),
        flexible=(
            policy_envelope.FlexibleGpu("GPU-2", 200.0, 500.0, 1),
            policy_envelope.FlexibleGpu("GPU-3", 200.0, 500.0, 0),
        ),
    )
    # The protected GPU draws 700 W: the 800 W left go to the higher priority first, up to its ceiling.
    assert policy_envelope.share(envelope, 700.0) == {"GPU-2": 500.0, "GPU-3": 300.0}


def test_the_capped_verdict_reaches_the_operators_model() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for capped in (True, False, None):
        gpu = messages.GpuReport(uuid="u", index=0, status=wire.GpuStatus.OK, sampled_at=now, capped=capped)
        assert wire.GpuReport.model_validate_json(messages.encode(gpu)).capped is capped
        assert ("capped" in json.loads(messages.encode(gpu))) is (capped is not None)
