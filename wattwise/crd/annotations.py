"""How a pod opts in: `wattwise.dev/latency-tier` and `wattwise.dev/workload-class` annotations.

The tier annotation wins over the class's tier when both are set, so a user can move one pod without editing a
shared class. A malformed annotation is an error with a message fit for an Event on the pod; callers fall back
to the default tier and say so rather than guess.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from wattwise.crd.common import DNS_SUBDOMAIN_RE, LatencyTier

LATENCY_TIER_ANNOTATION = "wattwise.dev/latency-tier"
WORKLOAD_CLASS_ANNOTATION = "wattwise.dev/workload-class"


class AnnotationError(ValueError):
    """A Wattwise annotation on a pod has a value that cannot be used."""


@dataclasses.dataclass(frozen=True, slots=True)
class PodPowerIntent:
    """What a pod's annotations ask for; either part may be absent."""

    tier: LatencyTier | None = None
    workload_class: str | None = None

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str] | None) -> PodPowerIntent:
        """Parse a pod's annotations; raise AnnotationError with a readable reason on a bad value."""
        annotations = annotations or {}
        tier: LatencyTier | None = None
        raw_tier = annotations.get(LATENCY_TIER_ANNOTATION)
        if raw_tier is not None:
            try:
                tier = LatencyTier(raw_tier.strip().lower())
            except ValueError:
                allowed = ", ".join(t.value for t in LatencyTier)
                raise AnnotationError(
                    f"annotation {LATENCY_TIER_ANNOTATION}={raw_tier!r} is not a latency tier (one of: {allowed})"
                ) from None
        klass = annotations.get(WORKLOAD_CLASS_ANNOTATION)
        if klass is not None:
            klass = klass.strip()
            if not klass or len(klass) > 253 or not DNS_SUBDOMAIN_RE.match(klass):
                raise AnnotationError(
                    f"annotation {WORKLOAD_CLASS_ANNOTATION}={klass!r} is not a valid WorkloadClass name "
                    "(lower-case RFC 1123 subdomain)"
                )
        return cls(tier=tier, workload_class=klass)

    def resolve_tier(self, class_tier: LatencyTier | None, default: LatencyTier) -> LatencyTier:
        """The tier that applies: the explicit annotation, else the class's tier, else the default."""
        if self.tier is not None:
            return self.tier
        if class_tier is not None:
            return class_tier
        return default
