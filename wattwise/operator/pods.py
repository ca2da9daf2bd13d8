"""GPU pods: how many GPUs a pod asks for and which tier and class its annotations resolve to. Pure.

An annotation that cannot be used (a tier that is not a tier, a class that does not exist) never blocks the pod:
it gets the configured default tier, and a `Problem` carries a sentence for an Event on the pod, so the person who
wrote it finds out from `kubectl describe pod`. Tiers are resolved against the classes at every tick, so a class
created after its pods takes effect at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wattwise.crd.annotations import AnnotationError, PodPowerIntent
from wattwise.crd.common import LatencyTier
from wattwise.operator.records import ClassRecord, PodRecord

GPU_RESOURCE = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """An Event for the pod: why its annotations were not used as written."""

    reason: str
    message: str


def quantity(value: Any) -> int:
    """An extended-resource quantity is a whole number; anything else counts as zero."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def _container_gpus(container: Mapping[str, Any]) -> int:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    # Extended resources must have requests == limits; either may be the one written.
    return quantity(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0)))


def gpu_request(pod_spec: Mapping[str, Any]) -> int:
    """GPUs the pod holds: the sum over its containers, or the largest init container if that is more."""
    main = sum(_container_gpus(c) for c in pod_spec.get("containers") or [])
    init = max((_container_gpus(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(main, init)


def read_intent(
    annotations: Mapping[str, str] | None, default_tier: LatencyTier
) -> tuple[PodPowerIntent, Problem | None]:
    """The pod's annotations; a malformed one is dropped (default tier) with a Problem saying so."""
    try:
        return PodPowerIntent.from_annotations(annotations), None
    except AnnotationError as exc:
        return PodPowerIntent(), Problem("InvalidPowerAnnotation", f"{exc}; using the default tier {default_tier}")


def effective(
    pod: PodRecord, classes: Mapping[str, ClassRecord], default_tier: LatencyTier
) -> tuple[LatencyTier, ClassRecord | None]:
    """Tier and class that apply now: the tier annotation, else the class's tier, else the default."""
    klass = classes.get(pod.workload_class) if pod.workload_class is not None else None
    if pod.tier is not None:
        return pod.tier, klass
    if klass is not None:
        return klass.spec.tier, klass
    return default_tier, None


def class_problem(pod: PodRecord, classes: Mapping[str, ClassRecord], default_tier: LatencyTier) -> Problem | None:
    """A Problem when the pod names a WorkloadClass that does not exist."""
    if pod.workload_class is None or pod.workload_class in classes:
        return None
    tier, _ = effective(pod, classes, default_tier)
    source = "its latency-tier annotation" if pod.tier is not None else "the default tier"
    return Problem(
        "UnknownWorkloadClass", f"WorkloadClass {pod.workload_class!r} does not exist; using {source} {tier}"
    )
