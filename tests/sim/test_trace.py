"""Trace parsing: the shipped trace loads; bad CSVs fail with a clear error naming the file and line."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from wattwise.sim.trace import TraceError, load_trace, parse_trace, scale_trace, shipped_trace, synthetic_trace

GOOD = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:05.9799600,110,27
"""


def test_shipped_trace_is_the_azure_code_trace() -> None:
    trace = shipped_trace()
    assert len(trace) == 8819
    assert trace.arrival_s[0] == 0.0
    assert 3400 < trace.duration_s < 3500  # ~57 minutes
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert int(np.median(trace.context_tokens)) == 1469
    assert int(np.median(trace.generated_tokens)) == 13


def test_parse_sorts_and_rebases_seven_digit_fractions() -> None:
    trace = parse_trace(GOOD, "t.csv")
    assert list(trace.context_tokens) == [4808, 3180, 110]
    assert trace.arrival_s == pytest.approx([0.0, 0.052, 2.0])


def test_numeric_timestamps_are_seconds() -> None:
    trace = parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n10.5,1,2\n12,3,4\n", "n.csv")
    assert trace.arrival_s == pytest.approx([0.0, 1.5])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,ContextTokens,GeneratedTokens\n1,2,3\n", r"missing column\(s\) TIMESTAMP"),
        ("", "missing column"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,2,3\nyesterday,2,3\n", r"bad.csv:3: bad value"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,two,3\n", r"bad.csv:2: bad value"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,2\n", r"bad.csv:2: bad value"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,-2,3\n", r"bad.csv:2: token counts"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\ninf,2,3\n", r"bad.csv:2"),
    ],
)
def test_bad_csv_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_trace(text, "bad.csv")


def test_load_trace_reports_unreadable_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError):
        load_trace(tmp_path / "bin.csv")


def test_scale_multiplies_the_rate_and_keeps_the_shape() -> None:
    trace = shipped_trace()
    doubled = scale_trace(trace, 2.0, seed=1)
    assert len(doubled) == 2 * len(trace)
    half = scale_trace(trace, 0.5, seed=1)
    assert 0.45 * len(trace) < len(half) < 0.55 * len(trace)
    # Bursts stay where they were: per-minute counts of the doubled trace track the original's.
    bins = np.arange(0, 3480, 60)
    original = np.histogram(trace.arrival_s, bins)[0]
    scaled = np.histogram(doubled.arrival_s, bins)[0]
    assert np.corrcoef(original, scaled)[0, 1] > 0.99
    assert scale_trace(trace, 2.0, seed=1).arrival_s == pytest.approx(doubled.arrival_s)
    with pytest.raises(ValueError):
        scale_trace(trace, 0.0)


def test_window_wraps_around_the_end() -> None:
    trace = shipped_trace()
    second_half = trace.window(trace.duration_s / 2, trace.duration_s)
    assert len(second_half) == len(trace)
    assert second_half.arrival_s[0] >= 0 and np.all(np.diff(second_half.arrival_s) >= 0)
    first_minute = trace.window(0.0, 60.0)
    assert len(first_minute) == np.count_nonzero(trace.arrival_s < 60.0)


def test_synthetic_trace_is_deterministic_and_bursty() -> None:
    a = synthetic_trace(1200.0, 3.0, seed=4)
    b = synthetic_trace(1200.0, 3.0, seed=4)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert 0.6 * 3600 < len(a) < 1.6 * 3600
    per_second = np.histogram(a.arrival_s, np.arange(0, 1201))[0]
    assert per_second.max() > 3 * per_second.mean()
