"""LLM request traces: the shipped Azure trace, any CSV of the same shape, scaling, and a synthetic generator.

A trace is arrival times (seconds from its first request) with prompt and output token counts. CSVs need the
columns `TIMESTAMP, ContextTokens, GeneratedTokens` (the Azure LLM inference trace format); TIMESTAMP is an ISO
date-time (any number of fractional digits) or a number of seconds. Bad input raises `TraceError` naming the
file and line, so a user pointing `wattwise simulate --trace` at the wrong file learns what is wrong.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.resources
import io
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

REQUIRED_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
SHIPPED_TRACE = "AzureLLMInferenceTrace_code.csv"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class TraceError(ValueError):
    """A trace file that cannot be used, with the reason and where."""


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival; `arrival_s` starts at 0."""

    name: str
    arrival_s: FloatArray
    context_tokens: IntArray
    generated_tokens: IntArray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not len(self.context_tokens) == len(self.generated_tokens) == n:
            raise TraceError(f"{self.name}: columns of different lengths")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    def window(self, start_s: float, duration_s: float) -> Trace:
        """The requests arriving in [start, start + duration), re-based to start at 0; wraps around the end."""
        if len(self) == 0 or duration_s <= 0:
            return self
        period = self.duration_s + 1e-9
        shifted = (self.arrival_s - start_s) % period
        keep = shifted < duration_s
        order = np.argsort(shifted[keep], kind="stable")
        return Trace(
            name=self.name,
            arrival_s=shifted[keep][order],
            context_tokens=self.context_tokens[keep][order],
            generated_tokens=self.generated_tokens[keep][order],
        )


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    stamp = dt.datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def parse_trace(text: str, name: str) -> Trace:
    """Parse CSV text; raises TraceError for a missing column, a bad value or no rows at all."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise TraceError(
            f"{name}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)} "
            f"(found {', '.join(columns) or 'no header'})"
        )
    reader.fieldnames = columns
    times: list[float] = []
    context: list[int] = []
    generated: list[int] = []
    for line, row in enumerate(reader, start=2):
        try:
            t = _parse_time(row["TIMESTAMP"] or "")
            c, g = int(row["ContextTokens"] or ""), int(row["GeneratedTokens"] or "")
        except (TypeError, ValueError) as exc:
            raise TraceError(f"{name}:{line}: bad value ({exc})") from None
        if c < 0 or g < 0 or not math.isfinite(t):
            raise TraceError(f"{name}:{line}: token counts must be >= 0 and the timestamp finite")
        times.append(t)
        context.append(c)
        generated.append(g)
    if not times:
        raise TraceError(f"{name}: no requests")
    arrival = np.asarray(times, dtype=np.float64)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order] - arrival[order][0]
    return Trace(
        name=name,
        arrival_s=arrival,
        context_tokens=np.asarray(context, dtype=np.int64)[order],
        generated_tokens=np.asarray(generated, dtype=np.int64)[order],
    )


def load_trace(path: pathlib.Path) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from None
    return parse_trace(text, str(path))


def shipped_trace() -> Trace:
    """The Azure LLM inference trace (code service) shipped in `wattwise/data/` (CC-BY-4.0, Splitwise)."""
    text = importlib.resources.files("wattwise.data").joinpath(SHIPPED_TRACE).read_text(encoding="utf-8")
    return parse_trace(text, SHIPPED_TRACE)


def scale_trace(trace: Trace, factor: float, seed: int = 0, jitter_s: float = 1.0) -> Trace:
    """Multiply the request rate by `factor`, keeping the trace's shape (its bursts and lulls).

    Each request is kept floor(factor) times, plus once more with probability frac(factor); copies after the
    first arrive up to `jitter_s` later, so a copy lands in the same burst without being simultaneous.
    """
    if factor <= 0 or not math.isfinite(factor):
        raise ValueError("scale factor must be a positive number")
    rng = np.random.default_rng(seed)
    whole = math.floor(factor)
    copies = np.full(len(trace), whole, dtype=np.int64) + (rng.random(len(trace)) < factor - whole)
    idx = np.repeat(np.arange(len(trace)), copies)
    first = np.r_[True, idx[1:] != idx[:-1]] if len(idx) else np.zeros(0, dtype=bool)
    arrival = trace.arrival_s[idx] + np.where(first, 0.0, rng.random(len(idx)) * jitter_s)
    order = np.argsort(arrival, kind="stable")
    return Trace(
        name=f"{trace.name} x{factor:g}",
        arrival_s=arrival[order],
        context_tokens=trace.context_tokens[idx][order],
        generated_tokens=trace.generated_tokens[idx][order],
    )


def synthetic_trace(
    duration_s: float,
    mean_rate_per_s: float,
    seed: int = 0,
    *,
    period_s: float = 600.0,
    swing: float = 0.8,
    burst_every_s: float = 180.0,
    burst_len_s: float = 20.0,
    burst_gain: float = 4.0,
    like: Trace | None = None,
) -> Trace:
    """Poisson arrivals with a sinusoidal swing (a compressed day) and occasional bursts.

    Token counts are drawn from `like` (default: the shipped trace), so only the arrival process is invented.
    """
    if duration_s <= 0 or mean_rate_per_s <= 0:
        raise ValueError("duration and rate must be positive")
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, duration_s, 1.0)
    rate = mean_rate_per_s * (1.0 + swing * np.sin(2 * np.pi * ts / period_s))
    starts = rng.uniform(0.0, duration_s, size=max(1, int(duration_s / burst_every_s)))
    for start in starts:
        rate[(ts >= start) & (ts < start + burst_len_s)] *= burst_gain
    counts = rng.poisson(np.maximum(rate, 0.0))
    arrival = np.repeat(ts, counts) + rng.random(int(counts.sum()))
    arrival.sort()
    source = like if like is not None else shipped_trace()
    pick = rng.integers(0, len(source), size=len(arrival))
    return Trace(
        name=f"synthetic {mean_rate_per_s:g}/s",
        arrival_s=arrival - (arrival[0] if len(arrival) else 0.0),
        context_tokens=source.context_tokens[pick],
        generated_tokens=source.generated_tokens[pick],
    )
