"""Inference replicas: how requests turn into GPU work, time and tokens.

A replica is one model instance on `tensor_parallel` GPUs (llama2-70b on two H100s in the headline scenario),
timed by the Splitwise profile (`calibration.ServingProfile`). Work is measured in *nominal seconds*: how long
the replica takes at full speed. Each step a replica gets `dt x speed` nominal seconds, where speed is the
slowest of its GPUs' `throughput_factor` (tensor-parallel GPUs move in lockstep).

- `RequestReplicas` serve a request stream (critical and standard tiers) with a continuous-batching
  approximation: requests queue FIFO; prefill runs one prompt at a time and takes priority (as vLLM's default
  scheduler does); every running request gains one token per decode step, whose time grows with the batch;
  at most `max_batch` requests decode together. Latency is measured per request.
- `BacklogReplicas` serve always-backlogged batch jobs (tolerant tier): each job is a fixed sample of requests
  run at the maximum batch, progressed as a fluid, vectorised over replicas. A job's completion time is from
  its start to its end (its wait in an endless backlog means nothing).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from wattwise.sim.calibration import FloatArray, ServingProfile
from wattwise.sim.trace import Trace

_EPS = 1e-12


@dataclass
class RequestLog:
    """Per-request timing of one tier's trace (NaN until it happens)."""

    arrival_s: FloatArray
    prefill_s: FloatArray  # nominal prefill time
    context_tokens: FloatArray
    generated_tokens: FloatArray
    first_token_s: FloatArray = field(init=False)
    done_s: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.first_token_s = np.full(len(self.arrival_s), np.nan)
        self.done_s = np.full(len(self.arrival_s), np.nan)

    @classmethod
    def from_trace(cls, trace: Trace, profile: ServingProfile) -> RequestLog:
        context = trace.context_tokens.astype(np.float64)
        return cls(
            arrival_s=trace.arrival_s.copy(),
            prefill_s=profile.prefill_time_s(np.maximum(context, 1.0)),
            context_tokens=context,
            generated_tokens=np.maximum(trace.generated_tokens.astype(np.float64), 1.0),
        )


class _Replica:
    __slots__ = ("decoding", "prefill_id", "prefill_left", "waiting")

    def __init__(self) -> None:
        self.waiting: collections.deque[int] = collections.deque()
        self.prefill_id = -1
        self.prefill_left = 0.0
        self.decoding: list[list[float]] = []  # [tokens left, request id]

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + (self.prefill_id >= 0) + len(self.decoding)


class RequestReplicas:
    """A pool of replicas serving one request stream; the router sends each arrival to the least loaded."""

    def __init__(self, count: int, log: RequestLog, profile: ServingProfile) -> None:
        self.replicas = [_Replica() for _ in range(count)]
        self.log = log
        self.max_batch = profile.max_batch
        steps = profile.decode_step_time_s(np.arange(0, self.max_batch + 1, dtype=np.float64))
        self._decode_step = [float(s) for s in steps]
        self._next = 0  # next request of the log to arrive
        self.tokens = np.zeros(count)  # processed (prompt + generated) tokens, per replica

    def admit(self, until_s: float) -> None:
        """Route every request arriving before `until_s`: least outstanding requests, lowest index on ties."""
        arrival = self.log.arrival_s
        replicas = self.replicas
        while self._next < len(arrival) and arrival[self._next] < until_s:
            best = min(range(len(replicas)), key=lambda i: replicas[i].outstanding)
            replicas[best].waiting.append(self._next)
            self._next += 1

    def advance(self, now_s: float, dt_s: float, speed: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Run every replica for dt at its speed; return its busy share and compute-bound share of the step."""
        n = len(self.replicas)
        busy = np.zeros(n)
        compute = np.zeros(n)
        for i, rep in enumerate(self.replicas):
            if rep.prefill_id < 0 and not rep.waiting and not rep.decoding:
                continue
            used, prefill = self._run(rep, i, now_s, dt_s * float(speed[i]), float(speed[i]))
            total = dt_s * float(speed[i])
            busy[i] = used / total if total > 0 else 1.0
            compute[i] = prefill / used if used > 0 else 0.0
        return busy, compute

    def _run(self, rep: _Replica, i: int, now_s: float, budget: float, speed: float) -> tuple[float, float]:
        log = self.log
        total = budget
        prefill_used = 0.0
        tokens = 0.0
        while budget > _EPS:
            if rep.prefill_id < 0 and rep.waiting and len(rep.decoding) < self.max_batch:
                rep.prefill_id = rep.waiting.popleft()
                rep.prefill_left = float(log.prefill_s[rep.prefill_id])
            if rep.prefill_id >= 0:
                use = min(budget, rep.prefill_left)
                budget -= use
                prefill_used += use
                rep.prefill_left -= use
                if rep.prefill_left <= _EPS:
                    rid = rep.prefill_id
                    rep.prefill_id = -1
                    at = now_s + (total - budget) / speed
                    log.first_token_s[rid] = at
                    tokens += log.context_tokens[rid] + 1.0
                    left = float(log.generated_tokens[rid]) - 1.0
                    if left <= 0.0:
                        log.done_s[rid] = at
                    else:
                        rep.decoding.append([left, float(rid)])
                continue
            if not rep.decoding:
                break
            batch = len(rep.decoding)
            step = self._decode_step[batch]
            k = min(d[0] for d in rep.decoding)
            if k * step <= budget:
                budget -= k * step
                tokens += k * batch
                at = now_s + (total - budget) / speed
                still = []
                for d in rep.decoding:
                    d[0] -= k
                    if d[0] <= 1e-9:
                        log.done_s[int(d[1])] = at
                    else:
                        still.append(d)
                rep.decoding = still
            else:
                steps = budget / step
                for d in rep.decoding:
                    d[0] -= steps
                tokens += steps * batch
                budget = 0.0
        self.tokens[i] += tokens
        return total - budget, prefill_used


@dataclass(frozen=True)
class BatchJob:
    """A sample of requests run as one job at the maximum batch."""

    work_s: float  # nominal seconds
    compute_fraction: float
    tokens: float


def make_jobs(trace: Trace, profile: ServingProfile, count: int, requests_per_job: int, seed: int) -> list[BatchJob]:
    """`count` jobs of `requests_per_job` requests drawn (with replacement) from `trace`'s token counts."""
    rng = np.random.default_rng(seed)
    step = float(profile.decode_step_time_s(np.array([float(profile.max_batch)]))[0]) / profile.max_batch
    jobs = []
    for _ in range(count):
        pick = rng.integers(0, len(trace), size=requests_per_job)
        context = np.maximum(trace.context_tokens[pick].astype(np.float64), 1.0)
        generated = np.maximum(trace.generated_tokens[pick].astype(np.float64), 1.0)
        prefill = float(profile.prefill_time_s(context).sum())
        decode = float((generated - 1.0).sum()) * step
        jobs.append(BatchJob(prefill + decode, prefill / (prefill + decode), float((context + generated).sum())))
    return jobs


class BacklogReplicas:
    """A pool of replicas that always have a batch job to run; jobs are taken in order from `jobs`."""

    def __init__(self, count: int, jobs: list[BatchJob]) -> None:
        if not jobs:
            raise ValueError("a backlog needs at least one job")
        self._jobs = jobs
        self._taken = 0
        self.left_s = np.zeros(count)
        self.work_s = np.zeros(count)
        self.compute_fraction = np.zeros(count)
        self.tokens_per_s = np.zeros(count)  # tokens per nominal second of the current job
        self.started_s = np.zeros(count)
        self.tokens = np.zeros(count)
        self.completions: list[tuple[float, float]] = []  # (end, duration)
        for i in range(count):
            self._start(i, 0.0, 0.0)

    def _start(self, i: int, at_s: float, carried_s: float) -> None:
        job = self._jobs[self._taken % len(self._jobs)]
        self._taken += 1
        self.work_s[i] = job.work_s
        self.left_s[i] = job.work_s - carried_s
        self.compute_fraction[i] = job.compute_fraction
        self.tokens_per_s[i] = job.tokens / job.work_s
        self.started_s[i] = at_s

    def advance(self, now_s: float, dt_s: float, speed: FloatArray) -> tuple[FloatArray, FloatArray]:
        progress = dt_s * speed
        self.tokens += np.minimum(progress, np.maximum(self.left_s, 0.0)) * self.tokens_per_s
        self.left_s -= progress
        for i in np.flatnonzero(self.left_s <= 0.0):
            over = -float(self.left_s[i])
            end = now_s + dt_s - over / max(float(speed[i]), _EPS)
            self.completions.append((end, end - float(self.started_s[i])))
            self._start(int(i), end, over)
            self.tokens[i] += over * self.tokens_per_s[i]
        return np.ones(len(self.left_s)), self.compute_fraction.copy()
