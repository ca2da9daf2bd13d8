"""Pod annotations: how a pod says its tier or class, and the errors it gets when it says it wrong."""

import pytest

from wattwise.crd import LATENCY_TIER_ANNOTATION, WORKLOAD_CLASS_ANNOTATION, LatencyTier, PodPowerIntent
from wattwise.crd.annotations import AnnotationError


def test_no_annotations_means_no_intent() -> None:
    intent = PodPowerIntent.from_annotations(None)
    assert intent == PodPowerIntent()
    assert intent.resolve_tier(None, LatencyTier.STANDARD) is LatencyTier.STANDARD


def test_tier_annotation_wins_over_class_tier() -> None:
    intent = PodPowerIntent.from_annotations({LATENCY_TIER_ANNOTATION: "Tolerant", WORKLOAD_CLASS_ANNOTATION: "chat"})
    assert intent.tier is LatencyTier.TOLERANT and intent.workload_class == "chat"
    assert intent.resolve_tier(LatencyTier.CRITICAL, LatencyTier.STANDARD) is LatencyTier.TOLERANT


def test_class_tier_used_when_no_tier_annotation() -> None:
    intent = PodPowerIntent.from_annotations({WORKLOAD_CLASS_ANNOTATION: "chat"})
    assert intent.resolve_tier(LatencyTier.CRITICAL, LatencyTier.STANDARD) is LatencyTier.CRITICAL


def test_unknown_tier_is_a_clear_error() -> None:
    with pytest.raises(
        AnnotationError, match=r"'urgent' is not a latency tier \(one of: critical, standard, tolerant\)"
    ):
        PodPowerIntent.from_annotations({LATENCY_TIER_ANNOTATION: "urgent"})


@pytest.mark.parametrize("bad", ["", "Chat", "chat_v2", "-chat", "a" * 254])
def test_bad_class_name_is_a_clear_error(bad: str) -> None:
    with pytest.raises(AnnotationError, match="is not a valid WorkloadClass name"):
        PodPowerIntent.from_annotations({WORKLOAD_CLASS_ANNOTATION: bad})


def test_tiers_rank_critical_first() -> None:
    assert sorted(LatencyTier, key=lambda t: t.rank) == [
        LatencyTier.CRITICAL,
        LatencyTier.STANDARD,
        LatencyTier.TOLERANT,
    ]
