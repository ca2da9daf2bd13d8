"""kopf handlers: keep `ClusterState` in step with PowerBudgets, WorkloadClasses, nodes and GPU pods.

Registered on an explicit `kopf.OperatorRegistry` (not kopf's global one) so the operator, the tests and a
second operator in one process never share handlers.

- PowerBudget / WorkloadClass: create, update (spec only), resume (on start and after a peering pause) validate
  the spec; a valid one enters the state, an invalid one leaves it with `Ready=False/InvalidSpec` and a Warning
  Event (a permanent error: retrying will not fix it). Odd but valid specs get a Warning Event (`checks`).
  Delete removes it (the delete handler is optional: it adds no finalizer of its own).
- PowerBudget daemon: alive exactly while this replica controls the budget. kopf stops daemons when peering
  pauses the operator, so the control loop only decides budgets whose daemon runs. (kopf puts a finalizer on each
  budget to stop its daemon before deletion: delete budgets while an operator runs, or remove it by hand.)
- Nodes and GPU pods: event handlers (no progress storage, no writes) feeding labels, GPU capacity and tiers.

What each handler does is a plain function here (`budget_changed`, `class_changed`, `node_seen`, `pod_seen`),
tested without kopf; `register` is the glue that hands them what kopf passes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any, NoReturn, Protocol

import kopf
import pydantic
from kubernetes.client import Configuration

from wattwise.crd.common import GROUP, VERSION, LatencyTier
from wattwise.crd.errors import describe
from wattwise.crd.powerbudget import PowerBudgetSpec
from wattwise.crd.workloadclass import WorkloadClassSpec
from wattwise.operator import checks
from wattwise.operator import conditions as cond
from wattwise.operator import pods as pod_rules
from wattwise.operator.budget_status import EventSpec
from wattwise.operator.records import BudgetRecord, ClassRecord, ClusterState, NodeRecord, PodRecord

log = logging.getLogger(__name__)

BUDGETS = "powerbudgets"
CLASSES = "workloadclasses"


class EventSink(Protocol):
    async def event(
        self, kind: str, name: str, uid: str, event: EventSpec, *, namespace: str | None = None, api_version: str = ""
    ) -> None: ...


@dataclasses.dataclass
class HandlerContext:
    state: ClusterState
    kube: EventSink
    default_tier: LatencyTier = LatencyTier.STANDARD
    #: (pod uid, reason) already told, so a pod gets one Event per problem, not one per watch event
    warned_pods: set[tuple[str, str]] = dataclasses.field(default_factory=set)


def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """kopf credentials from the same kubernetes-client configuration the rest of the operator uses."""
    scheme = token = None
    auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if auth:
        scheme, _, token = str(auth).partition(" ")
        if not token:
            scheme, token = "Bearer", scheme
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace="default",
    )


def _conditions(status: Mapping[str, Any], generation: int | None, desired: cond.Desired) -> list[dict[str, Any]]:
    return cond.merge(status.get("conditions"), [desired], generation, dt.datetime.now(dt.UTC))


async def _invalid(
    ctx: HandlerContext,
    kind: str,
    name: str,
    uid: str,
    generation: int | None,
    status: Mapping[str, Any],
    patch_status: MutableMapping[str, Any],
    exc: pydantic.ValidationError,
) -> NoReturn:
    message = "invalid spec: " + "; ".join(describe(exc))
    patch_status["conditions"] = _conditions(
        status, generation, cond.Desired(cond.READY, "False", "InvalidSpec", message)
    )
    patch_status["observedGeneration"] = generation
    await ctx.kube.event(kind, name, uid, EventSpec("Warning", "InvalidSpec", message))
    raise kopf.PermanentError(message)


async def budget_changed(
    ctx: HandlerContext,
    name: str,
    uid: str,
    generation: int | None,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    patch_status: MutableMapping[str, Any],
) -> None:
    """Create, update or resume of a PowerBudget: into the state if valid, out with Ready=False if not."""
    state = ctx.state
    try:
        parsed = PowerBudgetSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        state.drop_budget(name)
        await _invalid(ctx, "PowerBudget", name, uid, generation, status, patch_status, exc)
    previous = state.budgets.get(name)
    conditions = tuple(dict(c) for c in (status.get("conditions") or []))
    state.put_budget(BudgetRecord(name, parsed, int(generation or 0), uid, conditions))
    if previous is not None and previous.spec != parsed:
        changes = _spec_changes(previous.spec.to_wire(), parsed.to_wire())
        await ctx.kube.event("PowerBudget", name, uid, EventSpec("Normal", "SpecChanged", changes))
    for finding in checks.budget_findings(parsed, state.nodes):
        await ctx.kube.event("PowerBudget", name, uid, EventSpec("Warning", "SpecWarning", finding))


async def class_changed(
    ctx: HandlerContext,
    name: str,
    uid: str,
    generation: int | None,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    patch_status: MutableMapping[str, Any],
) -> None:
    """Create, update or resume of a WorkloadClass: into the state with Ready=True if valid."""
    state = ctx.state
    try:
        parsed = WorkloadClassSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        state.drop_class(name)
        await _invalid(ctx, "WorkloadClass", name, uid, generation, status, patch_status, exc)
    state.put_class(ClassRecord(name, parsed, int(generation or 0), uid))
    patch_status["observedGeneration"] = generation
    patch_status["conditions"] = _conditions(
        status, generation, cond.Desired(cond.READY, "True", "Accepted", f"tier {parsed.tier}, mode {parsed.mode}")
    )
    for finding in checks.class_findings(parsed):
        await ctx.kube.event("WorkloadClass", name, uid, EventSpec("Warning", "SpecWarning", finding))


def node_seen(
    state: ClusterState, event_type: str | None, name: str, meta: Mapping[str, Any], body: Mapping[str, Any]
) -> None:
    if event_type == "DELETED":
        state.drop_node(name)
        return
    allocatable = (body.get("status") or {}).get("allocatable") or {}
    gpus = pod_rules.quantity(allocatable.get(pod_rules.GPU_RESOURCE, 0))
    state.put_node(NodeRecord(name, dict(meta.get("labels") or {}), gpus, str(meta.get("uid") or "")))


async def pod_seen(
    ctx: HandlerContext,
    event_type: str | None,
    name: str,
    namespace: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    body: Mapping[str, Any],
) -> None:
    """A GPU pod appeared, changed or went: its record, and one Event per problem with its annotations."""
    state = ctx.state
    key = f"{namespace}/{name}"
    uid = str(meta.get("uid") or "")
    phase = (body.get("status") or {}).get("phase")
    if event_type == "DELETED" or phase in ("Succeeded", "Failed"):
        state.drop_pod(key)
        ctx.warned_pods -= {w for w in ctx.warned_pods if w[0] == uid}
        return
    intent, problem = pod_rules.read_intent(meta.get("annotations"), ctx.default_tier)
    record = PodRecord(
        namespace, name, spec.get("nodeName"), pod_rules.gpu_request(spec), intent.tier, intent.workload_class, uid
    )
    state.put_pod(record)
    problem = problem or pod_rules.class_problem(record, state.classes, ctx.default_tier)
    if problem is not None and (uid, problem.reason) not in ctx.warned_pods:
        ctx.warned_pods.add((uid, problem.reason))
        await ctx.kube.event(
            "Pod",
            name,
            uid,
            EventSpec("Warning", problem.reason, problem.message),
            namespace=namespace,
            api_version="v1",
        )


def register(registry: kopf.OperatorRegistry, ctx: HandlerContext, configuration: Configuration) -> None:
    """The kopf glue: each handler passes what kopf gives it to the functions above."""
    state = ctx.state

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    @kopf.on.resume(GROUP, VERSION, BUDGETS, registry=registry)
    @kopf.on.create(GROUP, VERSION, BUDGETS, registry=registry)
    @kopf.on.update(GROUP, VERSION, BUDGETS, field="spec", registry=registry)
    async def on_budget(
        name: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        await budget_changed(ctx, name, uid, meta.get("generation"), spec, status, patch.status)

    @kopf.on.delete(GROUP, VERSION, BUDGETS, optional=True, registry=registry)
    def on_budget_deleted(name: str, **_: Any) -> None:
        state.drop_budget(name)

    @kopf.daemon(GROUP, VERSION, BUDGETS, cancellation_timeout=2.0, registry=registry)
    async def budget_controlled(name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        state.activate(name)
        try:
            await stopped.wait()
        finally:
            state.deactivate(name)

    @kopf.on.resume(GROUP, VERSION, CLASSES, registry=registry)
    @kopf.on.create(GROUP, VERSION, CLASSES, registry=registry)
    @kopf.on.update(GROUP, VERSION, CLASSES, field="spec", registry=registry)
    async def on_class(
        name: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        await class_changed(ctx, name, uid, meta.get("generation"), spec, status, patch.status)

    @kopf.on.delete(GROUP, VERSION, CLASSES, optional=True, registry=registry)
    def on_class_deleted(name: str, **_: Any) -> None:
        state.drop_class(name)

    @kopf.on.event("", "v1", "nodes", registry=registry)
    def on_node(event: kopf.RawEvent, name: str, meta: kopf.Meta, body: kopf.Body, **_: Any) -> None:
        node_seen(state, event.get("type"), name, meta, body)

    def requests_gpus(spec: kopf.Spec, **_: Any) -> bool:
        return pod_rules.gpu_request(spec) > 0

    @kopf.on.event("", "v1", "pods", when=requests_gpus, registry=registry)
    async def on_pod(
        event: kopf.RawEvent,
        name: str,
        namespace: str | None,
        meta: kopf.Meta,
        spec: kopf.Spec,
        body: kopf.Body,
        **_: Any,
    ) -> None:
        await pod_seen(ctx, event.get("type"), name, namespace or "default", meta, spec, body)


def _spec_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> str:
    """`capWatts 10000 -> 8000, mode Monitor -> Enforce`: what an update changed, for the Event."""
    parts = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            nested = _spec_changes(a, b, f"{prefix}{key}.")
            if nested:
                parts.append(nested)
        else:
            parts.append(f"{prefix}{key} {a if a is not None else '(unset)'} -> {b if b is not None else '(unset)'}")
    return ", ".join(parts)
