"""The agent <-> operator wire schema: one `NodeReport` per node per second, answered by one `ReportReply`.

This module is the contract between `wattwise agent` (the client) and the operator's report endpoint (the
server). The operator validates with these models; the agent, which runs on every GPU node and cannot spare
pydantic's ~18 MiB, builds and reads the same messages with `wattwise.telemetry.messages`, a dependency-free
mirror that tests/node_agent/test_messages.py holds to these models field by field. Change a model here and that
test says what to change there. Conventions:

- `POST {operator}/v1/reports` with `Content-Type: application/json` and
  `Authorization: Bearer <projected ServiceAccount token>`. The agent re-reads the token file on every request
  because the kubelet rotates projected tokens; the operator verifies it with a TokenReview and checks that
  the pod's node is the `node` the report claims.
- JSON keys are camelCase, as in Kubernetes; optional values are left out rather than sent as null. A field a
  GPU does not support is absent, never faked as 0: absent means "unknown", and the operator must treat an
  unknown draw as the GPU's limit (missing data never looks like headroom).
- `apiVersion` names the schema. Within a version, changes are additive only and receivers ignore fields they
  do not know (so an operator can be upgraded before its agents, or the other way round). A breaking change
  gets a new version and a new path; the operator answers 400 to an `apiVersion` it does not speak.
- Units are in the names: watts, joules, Celsius, MHz, percent (0-100), seconds.

Reply semantics (level-based, idempotent: the reply states what should be, not what to change):
- A GPU listed in `ReportReply.gpus` with `enforced: true` gets `powerLimitWatts` (the GPU's default limit when
  that is null), clamped by the agent to the GPU's constraints; `lockedSmClocks` locks SM clocks (null
  unlocks clocks the agent had locked).
- A GPU absent from the reply, or listed with `enforced: false` (budgets in Monitor/Recommend mode), is left
  alone, except that a limit or clock lock the agent itself set earlier is undone (back to the default):
  Wattwise only owns a GPU's limit while it enforces one.
- `failSafe` is what the agent falls back to when it loses the operator: after `gracePeriodSeconds` without a
  successful reply it sets every GPU to its fail-safe limit. A null `failSafe` means "keep the last limits".

Node envelope (`ReportReply.envelope`, the node-local half of the control loop, `wattwise.policy.envelope`): the
GPU watts the operator's plan counted this node at, which the agent re-shares every fast tick (100 ms) until the
next reply, so a critical burst takes its watts from tolerant GPUs on the same node within one fast tick.
- The agent steers only GPUs that are also `enforced: true` in `gpus`: a flexible GPU the reply does not enforce
  keeps its own limit, and its draw comes off `watts` like a protected GPU's. (The operator sends an envelope only
  to a node whose every GPU it enforces.)
- `protected` GPUs (critical and standard work) keep their directive limits; their draw comes off `watts` first.
- `flexible` GPUs (tolerant work) get their limits from the agent, every fast tick, from
  `wattwise.policy.envelope.share()`: between their `floorWatts` and `ceilingWatts` and inside the GPU's own
  constraints, higher `priority` served first. Their directive `powerLimitWatts` is what applies without the
  envelope. A flexible GPU's floor never exceeds its ceiling (a reply saying otherwise is refused).
- Each GPU is listed at most once in `protected` and `flexible` together: a reply listing one twice in either, or
  in both, is refused (the error names the GPU). The agent would count a twice-listed GPU's draw twice, and a GPU
  both protected and flexible has no one rule for its limit.
- It holds for `validForSeconds` after the reply arrives: with no newer reply by then (or with no envelope in the
  reply), every GPU goes back to its directive limit, as before envelopes existed.
- `GpuReport.capped` is the agent's verdict for each GPU an envelope set the limit of since the previous report:
  whether it sat at its envelope cap for at least half of the fast ticks (`wattwise.policy.envelope.CapTracker`).
  A limit that moved every 100 ms cannot be judged from the mean draw. Absent for every other GPU.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# The version, paths, headers and enumerations live in `vocabulary` (no pydantic there) so the node agent's
# dependency-free codec, `messages`, shares them; they are re-exported here as part of the contract.
from wattwise.telemetry.vocabulary import API_VERSION as API_VERSION
from wattwise.telemetry.vocabulary import AUTH_HEADER as AUTH_HEADER
from wattwise.telemetry.vocabulary import DEFAULT_TOKEN_FILE as DEFAULT_TOKEN_FILE
from wattwise.telemetry.vocabulary import REPORT_PATH as REPORT_PATH
from wattwise.telemetry.vocabulary import TOKEN_AUDIENCE as TOKEN_AUDIENCE
from wattwise.telemetry.vocabulary import ActuationResult as ActuationResult
from wattwise.telemetry.vocabulary import AgentMode as AgentMode
from wattwise.telemetry.vocabulary import GpuStatus as GpuStatus
from wattwise.telemetry.vocabulary import Tier as Tier
from wattwise.telemetry.vocabulary import bearer as bearer


class WireModel(BaseModel):
    """camelCase on the wire; unknown fields ignored so additive changes never break an older peer."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    def to_json(self) -> bytes:
        """Serialised as sent: camelCase keys, unset optional fields left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


Watts = Annotated[float, Field(ge=0, le=10_000)]
Percent = Annotated[int, Field(ge=0, le=100)]
#: a node's GPU watts: eight GPUs at the `Watts` bound do not fit under it
NodeWatts = Annotated[float, Field(ge=0, le=1_000_000)]
#: as `WorkloadClass.spec.priority`
Priority = Annotated[int, Field(ge=0, le=1000)]


class PodRef(WireModel):
    """A container holding (part of) a GPU, from the kubelet PodResources API."""

    namespace: str
    pod: str
    container: str


class LimitConstraints(WireModel):
    """What NVML allows for this GPU's power limit."""

    min_watts: Watts
    max_watts: Watts
    default_watts: Watts


class ClockRange(WireModel):
    """Locked SM clock range (nvmlDeviceSetGpuLockedClocks)."""

    min_mhz: Annotated[int, Field(ge=0, le=10_000, alias="minMHz")]
    max_mhz: Annotated[int, Field(ge=0, le=10_000, alias="maxMHz")]


class Actuation(WireModel):
    """The last power-limit/clock action the agent took on a GPU, and whether the GPU agrees."""

    result: ActuationResult
    target_watts: Watts | None = None  #: what the agent aimed at (after clamping)
    requested_watts: Watts | None = None  #: what the operator (or the fail-safe) asked for, before clamping
    readback_watts: Watts | None = None  #: the enforced limit read back after setting it
    locked_sm_clocks: ClockRange | None = None  #: clocks the agent holds locked, if any
    message: str | None = None
    at: dt.datetime


class GpuReport(WireModel):
    """One GPU's sample. Every reading is optional: absent means the GPU does not support it (or is lost)."""

    uuid: str  #: NVML's GPU UUID; "unknown-<index>" for a GPU lost before its UUID could be read
    index: Annotated[int, Field(ge=0)]
    name: str | None = None
    status: GpuStatus
    error: str | None = None  #: why status is not ok
    sampled_at: dt.datetime
    power_watts: Watts | None = None  #: instantaneous draw (nvmlDeviceGetPowerUsage)
    #: mean draw since the previous sample from the energy counter: exact, unlike one instantaneous reading
    average_power_watts: Watts | None = None
    energy_joules: Annotated[float, Field(ge=0)] | None = None  #: total since the driver loaded (monotonic)
    enforced_limit_watts: Watts | None = None
    limits: LimitConstraints | None = None
    temperature_celsius: float | None = None
    memory_temperature_celsius: float | None = None
    sm_clock_mhz: Annotated[int, Field(ge=0)] | None = Field(default=None, alias="smClockMHz")
    memory_clock_mhz: Annotated[int, Field(ge=0)] | None = Field(default=None, alias="memoryClockMHz")
    utilization_percent: Percent | None = None
    memory_utilization_percent: Percent | None = None
    #: NVML clocks-event (throttle) reasons bitmask, and the names of the bits that are set
    clock_event_reasons: Annotated[int, Field(ge=0)] | None = None
    clock_event_reason_names: list[str] | None = None
    pods: list[PodRef] = []
    actuation: Actuation | None = None
    #: set only while a node envelope sets this GPU's limit: whether the envelope held it at its cap for at least
    #: half of the agent's fast ticks since the previous report (see the module docstring)
    capped: bool | None = None


class AgentInfo(WireModel):
    version: str
    backend: Literal["nvml", "sim"]
    started_at: dt.datetime
    pod: str | None = None  #: the agent's own pod name (downward API), for the operator's logs


class AgentState(WireModel):
    mode: AgentMode
    since: dt.datetime
    last_reply_at: dt.datetime | None = None
    consecutive_failures: Annotated[int, Field(ge=0)] = 0


class Issue(WireModel):
    """A node-level problem the operator should surface (condition/Event), e.g. PodResources unreachable."""

    code: str  #: CamelCase reason, e.g. PodResourcesUnavailable, NvmlNoPermission
    message: str


class NodeReport(WireModel):
    """What an agent sends every report interval."""

    api_version: Literal["telemetry.wattwise.dev/v1"] = API_VERSION
    kind: Literal["NodeReport"] = "NodeReport"
    node: str
    agent: AgentInfo
    sequence: Annotated[int, Field(ge=0)]  #: +1 per report; restarts at 0 with the agent
    sent_at: dt.datetime
    sample_interval_seconds: Annotated[float, Field(gt=0)]
    state: AgentState
    gpus: list[GpuReport]
    #: whether pod attribution is current; false when the PodResources API could not be read
    pods_known: bool = False
    issues: list[Issue] = []


class GpuDirective(WireModel):
    """What the operator wants for one GPU (see the module docstring for the exact semantics)."""

    enforced: bool = False
    power_limit_watts: Watts | None = None  #: null with enforced=true: the GPU's default limit
    locked_sm_clocks: ClockRange | None = None
    recommended_power_limit_watts: Watts | None = None  #: what Wattwise would set (Recommend mode), for metrics
    tier: Tier | None = None  #: the tier the operator resolved for the GPU's pod, for metric labels


class FailSafePolicy(WireModel):
    """The budget's fail-safe, resolved per GPU by the operator (minimum over the budgets a GPU sits in)."""

    grace_period_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    limit_watts: dict[str, Watts] = {}  #: by GPU UUID
    #: for GPUs not in `limitWatts`: this fraction of the GPU's default limit; null keeps their last limit
    limit_fraction: Annotated[float, Field(gt=0, le=1)] | None = None


class FlexibleGpu(WireModel):
    """A GPU whose limit the agent sets from the node envelope every fast tick (tolerant work)."""

    uuid: str
    floor_watts: Watts  #: the least the envelope gives it, whatever the protected GPUs draw
    ceiling_watts: Watts  #: the most: what it can use this tick (its demand estimate, at most its class ceiling)
    priority: Priority = 0  #: higher is served first

    @model_validator(mode="after")
    def _floor_within_ceiling(self) -> Self:
        if self.floor_watts > self.ceiling_watts:
            raise ValueError(
                f"flexible GPU {self.uuid!r}: floorWatts {self.floor_watts} exceeds ceilingWatts {self.ceiling_watts}"
            )
        return self


class NodeEnvelope(WireModel):
    """The GPU watts the operator's plan counted a node at, re-shared by its agent until the next reply."""

    watts: NodeWatts
    protected: list[str] = []  #: GPUs the agent never limits from the envelope: their draw comes off `watts` first
    flexible: list[FlexibleGpu] = []  #: GPUs that share what the protected ones leave
    #: the agent drops the envelope (back to the directive limits) when no newer reply arrived within this time
    valid_for_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0

    @model_validator(mode="after")
    def _each_gpu_listed_once(self) -> Self:
        """Refused, naming the first offending GPU: twice in `protected`, twice in `flexible`, then in both."""
        flexible = [g.uuid for g in self.flexible]
        for name, uuids in (("protected", self.protected), ("flexible", flexible)):
            twice = _first_repeat(uuids)
            if twice is not None:
                raise ValueError(f"GPU {twice!r} is listed twice in {name}")
        in_flexible = set(flexible)
        both = next((uuid for uuid in self.protected if uuid in in_flexible), None)
        if both is not None:
            raise ValueError(f"GPU {both!r} is listed both as protected and as flexible")
        return self


def _first_repeat(uuids: Iterable[str]) -> str | None:
    """The first UUID seen for the second time, in order."""
    seen: set[str] = set()
    for uuid in uuids:
        if uuid in seen:
            return uuid
        seen.add(uuid)
    return None


class ReportReply(WireModel):
    """The operator's answer to a `NodeReport`."""

    api_version: Literal["telemetry.wattwise.dev/v1"] = API_VERSION
    kind: Literal["ReportReply"] = "ReportReply"
    gpus: dict[str, GpuDirective] = {}  #: by GPU UUID
    fail_safe: FailSafePolicy | None = None
    #: the operator may slow reporting down under load; the agent keeps sampling at its own interval
    next_report_interval_seconds: Annotated[float, Field(ge=0.2, le=300)] = 1.0
    #: this node's share of its budgets until the next reply; absent: the directive limits apply as they are
    envelope: NodeEnvelope | None = None
