"""kopf handlers: keep `ClusterState` in step with PowerBudgets, WorkloadClasses, nodes and GPU pods.

Registered on an explicit `kopf.OperatorRegistry` (not kopf's global one) so the operator, the tests and a
second operator in one process never share handlers.

- PowerBudget / WorkloadClass: create, update (spec only), resume (on start and after a peering pause) validate
  the spec; a valid one enters the state, an invalid one leaves it with `Ready=False/InvalidSpec` and a Warning
  Event (a permanent error: retrying will not fix it). Odd but valid specs get a Warning Event (`checks`).
  Delete removes it (no finalizer: there is nothing to clean up outside the process).
- PowerBudget daemon: alive exactly while this replica controls the budget. kopf stops daemons when peering
  pauses the operator, so the control loop only decides budgets whose daemon runs.
- Nodes and GPU pods: event handlers (no progress storage, no writes) feeding labels, GPU capacity and tiers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

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
from wattwise.operator.controller import Controller
from wattwise.operator.kube import Kube
from wattwise.operator.records import BudgetRecord, ClassRecord, ClusterState, NodeRecord, PodRecord

log = logging.getLogger(__name__)

BUDGETS = "powerbudgets"
CLASSES = "workloadclasses"


@dataclasses.dataclass
class HandlerContext:
    state: ClusterState
    kube: Kube
    controller: Controller
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


def _invalid_conditions(status: kopf.Status, generation: int | None, message: str) -> list[dict[str, Any]]:
    return cond.merge(
        status.get("conditions"),
        [cond.Desired(cond.READY, "False", "InvalidSpec", message)],
        generation,
        dt.datetime.now(dt.UTC),
    )


def register(registry: kopf.OperatorRegistry, ctx: HandlerContext, configuration: Configuration) -> None:
    state, kube = ctx.state, ctx.kube

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    # --- PowerBudget -----------------------------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, BUDGETS, registry=registry)
    @kopf.on.create(GROUP, VERSION, BUDGETS, registry=registry)
    @kopf.on.update(GROUP, VERSION, BUDGETS, field="spec", registry=registry)
    async def budget_changed(
        name: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        generation = meta.get("generation")
        try:
            parsed = PowerBudgetSpec.model_validate(dict(spec))
        except pydantic.ValidationError as exc:
            message = "invalid spec: " + "; ".join(describe(exc))
            state.drop_budget(name)
            patch.status["conditions"] = _invalid_conditions(status, generation, message)
            patch.status["observedGeneration"] = generation
            await kube.event("PowerBudget", name, uid, EventSpec("Warning", "InvalidSpec", message))
            raise kopf.PermanentError(message) from None
        previous = state.budgets.get(name)
        conditions = tuple(dict(c) for c in (status.get("conditions") or []))
        state.put_budget(BudgetRecord(name, parsed, int(generation or 0), uid, conditions))
        if previous is not None and previous.spec != parsed:
            changes = _spec_changes(previous.spec.to_wire(), parsed.to_wire())
            await kube.event("PowerBudget", name, uid, EventSpec("Normal", "SpecChanged", changes))
        for finding in checks.budget_findings(parsed, state.nodes):
            await kube.event("PowerBudget", name, uid, EventSpec("Warning", "SpecWarning", finding))

    @kopf.on.delete(GROUP, VERSION, BUDGETS, optional=True, registry=registry)
    def budget_deleted(name: str, **_: Any) -> None:
        state.drop_budget(name)

    @kopf.daemon(GROUP, VERSION, BUDGETS, cancellation_timeout=2.0, registry=registry)
    async def budget_controlled(name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        state.activate(name)
        try:
            await stopped.wait()
        finally:
            state.deactivate(name)

    # --- WorkloadClass ---------------------------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, CLASSES, registry=registry)
    @kopf.on.create(GROUP, VERSION, CLASSES, registry=registry)
    @kopf.on.update(GROUP, VERSION, CLASSES, field="spec", registry=registry)
    async def class_changed(
        name: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        generation = meta.get("generation")
        try:
            parsed = WorkloadClassSpec.model_validate(dict(spec))
        except pydantic.ValidationError as exc:
            message = "invalid spec: " + "; ".join(describe(exc))
            state.drop_class(name)
            patch.status["conditions"] = _invalid_conditions(status, generation, message)
            patch.status["observedGeneration"] = generation
            await kube.event("WorkloadClass", name, uid, EventSpec("Warning", "InvalidSpec", message))
            raise kopf.PermanentError(message) from None
        state.put_class(ClassRecord(name, parsed, int(generation or 0), uid))
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = cond.merge(
            status.get("conditions"),
            [cond.Desired(cond.READY, "True", "Accepted", f"tier {parsed.tier}, mode {parsed.mode}")],
            generation,
            dt.datetime.now(dt.UTC),
        )
        for finding in checks.class_findings(parsed):
            await kube.event("WorkloadClass", name, uid, EventSpec("Warning", "SpecWarning", finding))

    @kopf.on.delete(GROUP, VERSION, CLASSES, optional=True, registry=registry)
    def class_deleted(name: str, **_: Any) -> None:
        state.drop_class(name)

    # --- nodes and GPU pods ----------------------------------------------------------------------------------

    @kopf.on.event("", "v1", "nodes", registry=registry)
    def node_event(event: kopf.RawEvent, name: str, meta: kopf.Meta, body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            state.drop_node(name)
            return
        allocatable = (body.get("status") or {}).get("allocatable") or {}
        gpus = pod_rules.quantity(allocatable.get(pod_rules.GPU_RESOURCE, 0))
        state.put_node(NodeRecord(name, dict(meta.get("labels") or {}), gpus, str(meta.get("uid") or "")))

    def requests_gpus(spec: kopf.Spec, **_: Any) -> bool:
        return pod_rules.gpu_request(spec) > 0

    @kopf.on.event("", "v1", "pods", when=requests_gpus, registry=registry)
    async def pod_event(
        event: kopf.RawEvent,
        name: str,
        namespace: str | None,
        meta: kopf.Meta,
        spec: kopf.Spec,
        body: kopf.Body,
        **_: Any,
    ) -> None:
        namespace = namespace or "default"
        key = f"{namespace}/{name}"
        uid = str(meta.get("uid") or "")
        phase = (body.get("status") or {}).get("phase")
        if event.get("type") == "DELETED" or phase in ("Succeeded", "Failed"):
            state.drop_pod(key)
            ctx.warned_pods -= {w for w in ctx.warned_pods if w[0] == uid}
            return
        intent, problem = pod_rules.read_intent(meta.annotations, ctx.default_tier)
        record = PodRecord(
            namespace, name, spec.get("nodeName"), pod_rules.gpu_request(spec), intent.tier, intent.workload_class, uid
        )
        state.put_pod(record)
        problem = problem or pod_rules.class_problem(record, state.classes, ctx.default_tier)
        if problem is not None and (uid, problem.reason) not in ctx.warned_pods:
            ctx.warned_pods.add((uid, problem.reason))
            await kube.event(
                "Pod",
                name,
                uid,
                EventSpec("Warning", problem.reason, problem.message),
                namespace=namespace,
                api_version="v1",
            )


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
