"""Turn a raw Kubernetes object (dict) into a typed Wattwise resource, or say exactly why not."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from wattwise.crd.common import API_VERSION
from wattwise.crd.errors import describe
from wattwise.crd.powerbudget import PowerBudget
from wattwise.crd.workloadclass import WorkloadClass

KINDS: dict[str, type[PowerBudget] | type[WorkloadClass]] = {
    "PowerBudget": PowerBudget,
    "WorkloadClass": WorkloadClass,
}


class InvalidResource(ValueError):
    """The object does not match its schema; `problems` holds one `path: message` line per fault."""

    def __init__(self, kind: str, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {kind} {name!r}: " + "; ".join(problems))


def parse_resource(obj: dict[str, Any]) -> PowerBudget | WorkloadClass:
    kind = obj.get("kind")
    name = str((obj.get("metadata") or {}).get("name", "?"))
    if obj.get("apiVersion") != API_VERSION or kind not in KINDS:
        raise InvalidResource(str(kind), name, [f"expected apiVersion {API_VERSION} and kind in {sorted(KINDS)}"])
    # Server-populated metadata and status are not the user's to get wrong; validate what they wrote.
    try:
        return KINDS[kind].model_validate(obj)
    except ValidationError as exc:
        raise InvalidResource(kind, name, describe(exc)) from None
