"""Scoring formulas: named cases with exact expected scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattwise.crd.common import LatencyTier
from wattwise.scheduler_extender import scoring

C, S, T = LatencyTier.CRITICAL, LatencyTier.STANDARD, LatencyTier.TOLERANT


@pytest.mark.parametrize(
    ("case", "tier", "h", "t", "expected"),
    [
        ("critical, all headroom, cool", C, 1.0, 1.0, 10),
        ("critical, no headroom, cool", C, 0.0, 1.0, 3),
        ("critical, half headroom, at threshold", C, 0.5, 0.0, 4),  # 10 x 0.35 = 3.5 rounds half up
        ("critical, half headroom, no temperature", C, 0.5, None, 5),
        ("critical, 0.64 weighted", C, 0.488, 1.0, 6),
        ("standard ignores temperature", S, 0.73, 0.0, 7),
        ("standard, empty budget", S, 1.0, None, 10),
        ("tolerant packs: tight budget scores high", T, 0.05, 1.0, 10),
        ("tolerant avoids big headroom", T, 0.9, 1.0, 1),
        ("tolerant, no headroom at all", T, 0.0, None, 10),
        ("missing headroom is neutral", C, None, 1.0, 5),
        ("missing headroom is neutral for tolerant", T, None, None, 5),
        ("h above 1 clamps", S, 7.0, None, 10),
        ("h below 0 clamps", S, -3.0, None, 0),
        ("NaN h counts as nothing left", S, math.nan, None, 0),
    ],
)
def test_score(case: str, tier: LatencyTier, h: float | None, t: float | None, expected: int) -> None:
    assert scoring.score(tier, h, t) == expected, case


@pytest.mark.parametrize(
    ("left", "target", "expected"),
    [
        (4500.0, 9000.0, 0.5),
        (-100.0, 9000.0, 0.0),
        (20000.0, 9000.0, 1.0),
        (100.0, 0.0, None),  # a budget with no capacity: no defined fraction
        (100.0, -5.0, None),
        (math.nan, 9000.0, None),
    ],
)
def test_headroom_fraction(left: float, target: float, expected: float | None) -> None:
    assert scoring.headroom_fraction(left, target) == expected


@pytest.mark.parametrize(
    ("temp", "threshold", "expected"),
    [(53.0, 83.0, 1.0), (68.0, 83.0, 0.5), (83.0, 83.0, 0.0), (95.0, 83.0, 0.0), (None, 83.0, None), (20.0, 83.0, 1.0)],
)
def test_thermal_fraction(temp: float | None, threshold: float, expected: float | None) -> None:
    assert scoring.thermal_fraction(temp, threshold) == expected


finite_or_none = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@given(tier=st.sampled_from(list(LatencyTier)), h=finite_or_none, t=finite_or_none)
def test_score_is_always_in_range(tier: LatencyTier, h: float | None, t: float | None) -> None:
    assert 0 <= scoring.score(tier, h, t) <= 10


@given(h1=st.floats(0, 1), h2=st.floats(0, 1))
def test_more_headroom_never_scores_lower_for_critical_and_higher_for_tolerant(h1: float, h2: float) -> None:
    lo, hi = sorted((h1, h2))
    assert scoring.score(C, lo, 0.5) <= scoring.score(C, hi, 0.5)
    assert scoring.score(T, lo, None) >= scoring.score(T, hi, None)
