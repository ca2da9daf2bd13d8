"""Shapes shared by both resources: API coordinates, tiers, label selectors and metav1.Condition."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

GROUP = "wattwise.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: RFC 1123 subdomain, what Kubernetes accepts as a cluster-scoped object's name.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_RE = re.compile(DNS_SUBDOMAIN)
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


class LatencyTier(enum.StrEnum):
    """How much latency a workload tolerates; decides who is squeezed first."""

    CRITICAL = "critical"
    STANDARD = "standard"
    TOLERANT = "tolerant"

    @property
    def rank(self) -> int:
        """0 for the most protected tier: allocation serves lower ranks first."""
        return _TIER_RANK[self]


_TIER_RANK = {LatencyTier.CRITICAL: 0, LatencyTier.STANDARD: 1, LatencyTier.TOLERANT: 2}


class Model(BaseModel):
    """Base for spec/status models: camelCase on the wire, unknown fields rejected like a structural schema."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _prune_nulls(cls, data: object) -> object:
        """kube-apiserver prunes a null in a non-nullable field before defaulting; do the same."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def to_wire(self) -> dict[str, object]:
        """The object as Kubernetes stores it: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class LabelSelectorRequirement(Model):
    key: Annotated[str, StringConstraints(min_length=1, max_length=317)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(Model):
    """metav1.LabelSelector; an empty selector selects every node."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes label-selector semantics (all terms ANDed)."""
        for key, value in (self.match_labels or {}).items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions or []:
            present = req.key in labels
            values = req.values or []
            if req.operator == "In" and not (present and labels[req.key] in values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class ObjectMeta(BaseModel):
    """The subset of metav1.ObjectMeta Wattwise reads; the API server owns the rest."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    name: ObjectName
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Condition(Model):
    """metav1.Condition, the shape `kubectl wait --for=condition=Ready` understands."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    last_transition_time: dt.datetime
    observed_generation: Annotated[int, Field(ge=0)] | None = None
