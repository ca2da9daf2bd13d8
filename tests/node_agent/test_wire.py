"""The wire schema: versioned, camelCase, unknown fields ignored, tiers the same as the CRDs', and the reporter
turning every way a report can fail into one ReportFailed. (test_messages.py pins the agent's codec to it.)"""

from __future__ import annotations

import json
import pathlib
import re
import typing

import pydantic
import pytest

from tests.node_agent.fakes import FakeOperator
from wattwise.crd import LatencyTier
from wattwise.node_agent.reporter import Reporter, ReportFailed
from wattwise.telemetry import messages, vocabulary, wire


def minimal_report() -> wire.NodeReport:
    """The operator's model of a report; `agent_report()` is the same report as the agent builds it."""
    return wire.NodeReport.model_validate_json(messages.encode(agent_report()))


def agent_report() -> messages.NodeReport:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return messages.NodeReport(
        node="n",
        agent=messages.AgentInfo(version="0", backend="sim", started_at=now),
        sequence=0,
        sent_at=now,
        sample_interval_seconds=1,
        state=messages.AgentState(mode=vocabulary.AgentMode.CONNECTED, since=now),
        gpus=[
            messages.GpuReport(uuid="GPU-1", index=0, status=vocabulary.GpuStatus.LOST, sampled_at=now, error="gone")
        ],
    )


def test_tiers_match_the_crd() -> None:
    assert set(typing.get_args(wire.Tier)) == set(typing.get_args(vocabulary.Tier)) == {t.value for t in LatencyTier}


def test_report_json_is_camel_case_without_nulls() -> None:
    data = minimal_report().to_json().decode()
    assert '"apiVersion":"telemetry.wattwise.dev/v1"' in data and '"sampleIntervalSeconds":1.0' in data
    assert "null" not in data and "powerWatts" not in data
    assert wire.NodeReport.model_validate_json(data) == minimal_report()


def test_report_rejects_another_version() -> None:
    data = minimal_report().to_json().replace(b"telemetry.wattwise.dev/v1", b"telemetry.wattwise.dev/v2")
    with pytest.raises(ValueError, match="apiVersion"):
        wire.NodeReport.model_validate_json(data)


def test_bad_operator_url() -> None:
    with pytest.raises(ValueError, match="operator URL"):
        Reporter("operator:8443", None)


def test_connection_refused_then_kept_alive() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once the socket is closed
    reporter = Reporter(f"http://127.0.0.1:{port}", None)
    with pytest.raises(ReportFailed, match="ConnectionRefused"):
        reporter.send(agent_report())
    reporter.close()
    with FakeOperator() as op:
        reporter = Reporter(op.url, None)
        try:
            assert reporter.send(agent_report()) == messages.ReportReply()
            assert reporter.send(agent_report()) == messages.ReportReply()
        finally:
            reporter.close()
        assert len(op.reports) == 2 and len(op.connections) == 1  # the second report reused the connection


def test_connection_closed_while_idle_is_retried_once() -> None:
    with FakeOperator() as op:
        op.drop_connections = True
        reporter = Reporter(op.url, None)
        try:
            for _ in range(3):
                assert reporter.send(agent_report()) == messages.ReportReply()
        finally:
            reporter.close()
        assert len(op.reports) == 3 and len(op.connections) == 3


def test_missing_token_file_is_a_failed_report(tmp_path: pathlib.Path) -> None:
    with FakeOperator() as op:
        reporter = Reporter(op.url, tmp_path / "absent")
        with pytest.raises(ReportFailed, match="ServiceAccount token"):
            reporter.send(agent_report())
        reporter.close()
        assert op.reports == []


def _unchecked_envelope(protected: list[str], flexible: list[str]) -> wire.NodeEnvelope:
    """An envelope as a faulty operator could send it: built without validation."""
    gpus = [wire.FlexibleGpu(uuid=uuid, floor_watts=200, ceiling_watts=450) for uuid in flexible]
    return wire.NodeEnvelope.model_construct(watts=1500, protected=protected, flexible=gpus, valid_for_seconds=3.0)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (wire.ReportReply.model_construct(next_report_interval_seconds=0.0), "nextReportIntervalSeconds: must be >="),
        (
            wire.ReportReply.model_construct(envelope=_unchecked_envelope(["GPU-1", "GPU-1"], [])),
            "envelope: GPU 'GPU-1' is listed twice in protected",
        ),
        (
            wire.ReportReply.model_construct(envelope=_unchecked_envelope([], ["GPU-3", "GPU-3"])),
            "envelope: GPU 'GPU-3' is listed twice in flexible",
        ),
        (
            wire.ReportReply.model_construct(envelope=_unchecked_envelope(["GPU-3"], ["GPU-3"])),
            "envelope: GPU 'GPU-3' is listed both as protected and as flexible",
        ),
    ],
    ids=["interval", "twice-protected", "twice-flexible", "both"],
)
def test_reply_that_does_not_match_the_schema(reply: wire.ReportReply, error: str) -> None:
    with FakeOperator() as op:
        op.reply = reply
        reporter = Reporter(op.url + "/", None)  # a trailing slash is fine
        try:
            with pytest.raises(ReportFailed, match="does not match") as failed:
                reporter.send(agent_report())
        finally:
            reporter.close()
    assert error in str(failed.value)


def test_lean_entry_point_has_the_same_flags() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "wattwise.node_agent", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "--backend" in out.stdout and "--keep-limits-on-exit" in out.stdout


def _wire_md_examples() -> list[str]:
    text = (pathlib.Path(wire.__file__).parent / "WIRE.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```json\n")[1:]]


@pytest.mark.parametrize("example", _wire_md_examples(), ids=lambda e: e.split('"kind": "')[1].split('"')[0])
def test_the_documented_examples_validate(example: str) -> None:
    """WIRE.md's examples are what the models accept, and the agent's codec reads the reply as pydantic does."""
    kind = json.loads(example)["kind"]
    model = wire.NodeReport if kind == "NodeReport" else wire.ReportReply
    parsed = model.model_validate_json(example)
    if isinstance(parsed, wire.ReportReply):
        assert parsed.envelope is not None and parsed.envelope.flexible[0].floor_watts == 210.0
        ours = messages.decode_reply(example.encode())
        assert ours.envelope is not None and ours.envelope.protected == tuple(parsed.envelope.protected)
        assert json.loads(messages.encode(ours)) == json.loads(parsed.to_json())
    else:
        assert parsed.gpus[0].capped is True and parsed.gpus[1].capped is None


def test_envelope_on_the_wire_is_camel_case_and_checked() -> None:
    envelope = wire.NodeEnvelope(
        watts=1500, protected=["GPU-1"], flexible=[wire.FlexibleGpu(uuid="GPU-2", floor_watts=200, ceiling_watts=450)]
    )
    assert json.loads(wire.ReportReply(envelope=envelope).to_json())["envelope"] == {
        "watts": 1500.0,
        "protected": ["GPU-1"],
        "flexible": [{"uuid": "GPU-2", "floorWatts": 200.0, "ceilingWatts": 450.0, "priority": 0}],
        "validForSeconds": 3.0,
    }
    with pytest.raises(ValueError, match=r"flexible GPU 'GPU-2': floorWatts 500\.0 exceeds ceilingWatts 450\.0"):
        wire.FlexibleGpu(uuid="GPU-2", floor_watts=500, ceiling_watts=450)
    with pytest.raises(ValueError, match="less than or equal to 60"):
        wire.NodeEnvelope(watts=1, valid_for_seconds=61)
    wire.NodeEnvelope(watts=20_000)  # a node's GPU watts may exceed one GPU's bound
    with pytest.raises(ValueError, match="priority"):
        wire.FlexibleGpu(uuid="GPU-2", floor_watts=1, ceiling_watts=2, priority=1001)


@pytest.mark.parametrize(
    ("protected", "flexible", "error"),
    [
        (["GPU-1", "GPU-3", "GPU-3"], ["GPU-2"], "GPU 'GPU-3' is listed twice in protected"),
        (["GPU-1"], ["GPU-3", "GPU-2", "GPU-3"], "GPU 'GPU-3' is listed twice in flexible"),
        (["GPU-1", "GPU-3"], ["GPU-2", "GPU-3"], "GPU 'GPU-3' is listed both as protected and as flexible"),
    ],
)
def test_an_envelope_lists_each_gpu_once(protected: list[str], flexible: list[str], error: str) -> None:
    """A GPU listed twice would have its draw counted twice; one both protected and flexible has no one rule."""
    gpus = [wire.FlexibleGpu(uuid=uuid, floor_watts=200, ceiling_watts=450) for uuid in flexible]
    with pytest.raises(ValueError, match=re.escape(error)):
        wire.NodeEnvelope(watts=1500, protected=protected, flexible=gpus)
    document = {
        "envelope": {"watts": 1500, "protected": protected, "flexible": [g.model_dump(by_alias=True) for g in gpus]}
    }
    with pytest.raises(pydantic.ValidationError) as refused:
        wire.ReportReply.model_validate_json(json.dumps(document))
    [problem] = refused.value.errors()
    assert problem["loc"] == ("envelope",) and problem["msg"] == f"Value error, {error}"
