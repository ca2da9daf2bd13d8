"""Curves fitted on the data shipped in `wattwise/data/`: what a power limit costs, how long work takes.

Pure functions over numpy arrays plus cached loaders of the CSVs; the GPU physics (`gpu.py`) and the serving
model (`serving.py`) read their constants from here, so every number in the simulator traces back to a file.

- Compute-bound throughput under a power limit (prefill): the median, across the six Zeus workloads, of the
  throughput kept at each A40 power limit, as a function of limit / TDP (Zeus, NSDI 2023).
- Memory-bound throughput (decode): no public sweep measures it. Splitwise reports that an H100 at 70% power
  keeps all of its decode throughput because decode draws ~380 W of 700 W; when a limit does bind, decode is
  assumed to lose `MEMORY_BOUND_LOSS_SHARE` of what compute-bound work loses at the same relative limit.
- Serving times: prefill time by prompt tokens and decode step time by batch size, llama2-70b on DGX-H100 with
  tensor parallelism 2 (Splitwise perf model), median of the repeated profiles.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

ZEUS_FILE = "zeus_summary_power_a40.csv"
SPLITWISE_FILE = "splitwise_perf_model.csv"
ZEUS_TDP_W = 300.0  # A40 board power, the top of the Zeus sweep

#: Share of the compute-bound loss that memory-bound (decode) work suffers at the same relative limit. An
#: assumption, documented in docs/simulator.md: the data says "much less", not how much less.
MEMORY_BOUND_LOSS_SHARE = 1.0 / 3.0

#: Splitwise's derived "H100 at 70% power" model: prefill time x1.30, decode unchanged.
SPLITWISE_PCAP_FRACTION = 0.70
SPLITWISE_PCAP_PREFILL_SLOWDOWN = 1.30


def _rows(filename: str) -> Iterator[dict[str, str]]:
    text = importlib.resources.files("wattwise.data").joinpath(filename).read_text(encoding="utf-8")
    yield from csv.DictReader(text.splitlines())


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear curve through measured points; flat beyond the last point."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, values: FloatArray) -> FloatArray:
        return np.interp(values, self.x, self.y)

    def at(self, value: float) -> float:
        return float(np.interp(value, self.x, self.y))


@functools.lru_cache(maxsize=1)
def zeus_points() -> tuple[tuple[float, float], ...]:
    """(limit / TDP, median throughput kept) for every limit of the Zeus A40 sweep, ascending."""
    epoch_time: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for row in _rows(ZEUS_FILE):
        key = (row["dataset"], row["network"], row["batch_size"], row["optimizer"])
        epoch_time[key][float(row["power_limit"])] = float(row["time_per_epoch"])
    limits = sorted({limit for times in epoch_time.values() for limit in times})
    points = []
    for limit in limits:
        kept = [t[ZEUS_TDP_W] / t[limit] for t in epoch_time.values() if limit in t and ZEUS_TDP_W in t]
        points.append((limit / ZEUS_TDP_W, statistics.median(kept)))
    return tuple(points)


@functools.lru_cache(maxsize=1)
def compute_bound_curve() -> Curve:
    """Throughput kept by compute-bound work vs limit / unlimited draw; through (0, 0) below the sweep."""
    points = [(0.0, 0.0), *zeus_points()]
    return Curve(tuple(p[0] for p in points), tuple(min(1.0, p[1]) for p in points))


@functools.lru_cache(maxsize=1)
def memory_bound_curve() -> Curve:
    """Throughput kept by memory-bound work: a fixed share of the compute-bound loss (module docstring)."""
    compute = compute_bound_curve()
    xs = compute.x[1:]  # keep (0, 0) out: a GPU at zero watts does nothing whatever it runs
    ys = tuple(1.0 - MEMORY_BOUND_LOSS_SHARE * (1.0 - y) for y in compute.y[1:])
    return Curve((0.0, *xs), (0.0, *ys))


@dataclass(frozen=True)
class ServingProfile:
    """How long one replica takes: prefill by prompt tokens (any batch), decode step by batch size."""

    model: str
    hardware: str
    tensor_parallel: int
    prompt_tokens: tuple[float, ...]
    prompt_time_s: tuple[float, ...]
    batch_sizes: tuple[float, ...]
    decode_step_s: tuple[float, ...]

    @property
    def max_batch(self) -> int:
        return int(self.batch_sizes[-1])

    def prefill_time_s(self, tokens: FloatArray) -> FloatArray:
        """Prefill time, linear in tokens beyond the largest profiled prompt (prefill is compute-bound)."""
        x, y = self.prompt_tokens, self.prompt_time_s
        slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        inside = np.interp(tokens, x, y)
        return np.where(tokens > x[-1], y[-1] + (tokens - x[-1]) * slope, inside)

    def decode_step_time_s(self, batch: FloatArray) -> FloatArray:
        return np.interp(batch, self.batch_sizes, self.decode_step_s)


@functools.lru_cache(maxsize=4)
def serving_profile(
    model: str = "llama2-70b", hardware: str = "h100-80gb", tensor_parallel: int = 2
) -> ServingProfile:
    """Median profiled times for one model/hardware/TP; decode steps from the 512-token-prompt rows.

    Batch sizes whose step is faster than a smaller batch's (the TP2 batch-64 rows, an artefact of the
    profile) are dropped: a bigger decode batch is never faster per step.
    """
    prompt: dict[int, list[float]] = defaultdict(list)
    decode: dict[int, list[float]] = defaultdict(list)
    for row in _rows(SPLITWISE_FILE):
        if (row["model"], row["hardware"], int(row["tensor_parallel"])) != (model, hardware, tensor_parallel):
            continue
        size, batch = int(row["prompt_size"]), int(row["batch_size"])
        if batch == 1:
            prompt[size].append(float(row["prompt_time"]) / 1000.0)
        if size == 512:
            decode[batch].append(float(row["token_time"]) / 1000.0)
    if not prompt or not decode:
        raise ValueError(f"no profile for {model} on {hardware} with tensor parallel {tensor_parallel}")
    sizes = sorted(prompt)
    batches: list[int] = []
    steps: list[float] = []
    for batch in sorted(decode):
        step = statistics.median(decode[batch])
        if steps and step < steps[-1]:
            continue
        batches.append(batch)
        steps.append(step)
    return ServingProfile(
        model=model,
        hardware=hardware,
        tensor_parallel=tensor_parallel,
        prompt_tokens=tuple(float(s) for s in sizes),
        prompt_time_s=tuple(statistics.median(prompt[s]) for s in sizes),
        batch_sizes=tuple(float(b) for b in batches),
        decode_step_s=tuple(steps),
    )
