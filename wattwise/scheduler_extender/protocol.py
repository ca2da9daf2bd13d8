"""kube-scheduler's extender wire protocol (`k8s.io/kube-scheduler/extender/v1`), parsed strictly.

The Go types carry no json tags, so the keys are the Go field names: `ExtenderArgs{Pod, Nodes, NodeNames}` in,
`ExtenderFilterResult{Nodes, NodeNames, FailedNodes, FailedAndUnresolvableNodes, Error}` and
`[]HostPriority{Host, Score}` (0..MaxExtenderPriority=10) out. With `nodeCacheCapable: true` the scheduler
sends `NodeNames`; otherwise a full `v1.NodeList` in `Nodes`, and the answer must use the same form.

Parsing never trusts its input: anything that is not what kube-scheduler sends raises `BadRequest` with one
readable line per problem, which the HTTP layer turns into a 400. Go's decoder matches keys case-insensitively
(exact match first); so does this one. Unknown top-level keys are ignored, as Go does, so a newer scheduler
that adds a field keeps working.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from wattwise.crd.errors import describe

MAX_EXTENDER_PRIORITY = 10
MIN_EXTENDER_PRIORITY = 0

#: What kube-apiserver accepts as a Node name (RFC 1123 subdomain, at most 253 characters).
_NODE_NAME = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_NODE_NAME_RE = re.compile(_NODE_NAME)
_NODE_NAMES_RE = re.compile(f"{_NODE_NAME}(?:\n{_NODE_NAME})*")


class BadRequest(ValueError):
    """The request is not something kube-scheduler would send; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Lenient(BaseModel):
    """Kubernetes objects carry many fields placement ignores: read what is needed, type-check only that."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


#: A resource.Quantity as JSON: a string, or a bare number (never a bool).
Quantity = Annotated[str, Strict()] | Annotated[int, Strict()] | Annotated[float, Strict()]


class ResourceRequirements(_Lenient):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class Container(_Lenient):
    name: str = ""
    resources: ResourceRequirements | None = None


class PodSpec(_Lenient):
    containers: list[Container] = []
    init_containers: list[Container] | None = Field(default=None, alias="initContainers")
    scheduler_name: str | None = Field(default=None, alias="schedulerName")


class PodMeta(_Lenient):
    name: str = Field(min_length=1, max_length=253)
    namespace: str = ""
    uid: str = ""
    annotations: dict[str, str] | None = None


class Pod(_Lenient):
    metadata: PodMeta
    spec: PodSpec

    @property
    def key(self) -> str:
        """`namespace/name`, how the live state names a pod."""
        return f"{self.metadata.namespace or 'default'}/{self.metadata.name}"


class _NodeMeta(_Lenient):
    name: str
    labels: dict[str, str] | None = None


class _NodeItem(_Lenient):
    metadata: _NodeMeta


@dataclasses.dataclass(frozen=True, slots=True)
class ExtenderArgs:
    """A parsed filter/prioritize request. `node_items` is set only in the full-NodeList form."""

    pod: Pod
    node_names: tuple[str, ...]
    node_items: tuple[dict[str, Any], ...] | None
    node_labels: Mapping[str, Mapping[str, str]]

    @property
    def node_cache_capable(self) -> bool:
        return self.node_items is None


def _field(body: Mapping[str, Any], name: str) -> Any:
    """Go's encoding/json key lookup: exact match first, then case-insensitive."""
    if name in body:
        return body[name]
    lower = name.lower()
    for key, value in body.items():
        if key.lower() == lower:
            return value
    return None


def _check_names(names: list[str], where: str) -> list[str]:
    # Fast path for what the scheduler sends (thousands of valid, distinct names): two C-speed passes.
    joined = "\n".join(names)
    if not names or (
        len(set(names)) == len(names)
        and max(map(len, names)) <= 253
        and joined.count("\n") == len(names) - 1  # no name hides a separator
        and _NODE_NAMES_RE.fullmatch(joined) is not None
    ):
        return []
    problems = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not name or len(name) > 253 or not _NODE_NAME_RE.fullmatch(name):
            problems.append(f"{where}[{i}]: {name[:80]!r} is not a valid node name")
        elif name in seen:
            problems.append(f"{where}[{i}]: duplicate node name {name!r}")
        seen.add(name)
    return problems


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest([f"body is not JSON: {str(exc)[:200]}"]) from None


def parse_extender_args(body: Any) -> ExtenderArgs:
    """Validate an ExtenderArgs document (already JSON-decoded)."""
    if not isinstance(body, dict):
        raise BadRequest([f"body must be a JSON object (ExtenderArgs), got {type(body).__name__}"])
    raw_pod = _field(body, "Pod")
    if raw_pod is None:
        raise BadRequest(["Pod: required"])
    if not isinstance(raw_pod, dict):
        raise BadRequest([f"Pod: must be an object, got {type(raw_pod).__name__}"])
    problems: list[str] = []
    pod: Pod | None = None
    try:
        pod = Pod.model_validate(raw_pod)
    except ValidationError as exc:
        problems += [f"Pod.{line}" for line in describe(exc)]

    raw_names, raw_nodes = _field(body, "NodeNames"), _field(body, "Nodes")
    names: list[str] = []
    items: tuple[dict[str, Any], ...] | None = None
    labels: dict[str, Mapping[str, str]] = {}
    if raw_names is not None and raw_nodes is not None:
        problems.append("set one of NodeNames (nodeCacheCapable) or Nodes, not both")
    elif raw_names is not None:
        if not isinstance(raw_names, list) or not all(isinstance(n, str) for n in raw_names):
            problems.append("NodeNames: must be a list of strings")
        else:
            names = raw_names
            problems += _check_names(names, "NodeNames")
    elif raw_nodes is not None:
        node_items = raw_nodes.get("items", False) if isinstance(raw_nodes, dict) else False
        node_items = [] if node_items is None else node_items  # Go marshals an empty NodeList's items as null
        if not isinstance(node_items, list):
            problems.append("Nodes: must be a v1.NodeList with an items list")
        else:
            for i, item in enumerate(node_items):
                try:
                    node = _NodeItem.model_validate(item)
                except ValidationError as exc:
                    problems += [f"Nodes.items[{i}].{line}" for line in describe(exc)]
                    continue
                names.append(node.metadata.name)
                labels[node.metadata.name] = node.metadata.labels or {}
            problems += _check_names(names, "Nodes.items[].metadata.name")
            items = tuple(node_items)
    else:
        problems.append("one of NodeNames (nodeCacheCapable) or Nodes is required")
    if problems or pod is None:
        raise BadRequest(problems[:20])
    return ExtenderArgs(pod=pod, node_names=tuple(names), node_items=items, node_labels=labels)


def filter_result(
    args: ExtenderArgs, passed: list[str], failed: Mapping[str, str], unresolvable: Mapping[str, str]
) -> dict[str, Any]:
    """ExtenderFilterResult in the request's form. `Error` stays empty: a non-empty one fails the pod."""
    result: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": "",
    }
    if args.node_items is None:
        result["NodeNames"] = passed
    else:
        keep = set(passed)
        items = [item for item, name in zip(args.node_items, args.node_names, strict=True) if name in keep]
        result["Nodes"] = {"metadata": {}, "items": items}
    return result


def host_priority_list(scores: Mapping[str, int]) -> list[dict[str, Any]]:
    """HostPriorityList. Scores come from `scoring`, which keeps them in 0..10 (the fuzz tests check)."""
    return [{"Host": host, "Score": score} for host, score in scores.items()]
