"""kopf's peering rule as the HTTP side applies it: the oldest live replica is the active one."""

from __future__ import annotations

import datetime as dt
import random

from wattwise.operator.peering import leads, priority_for_start

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def peer(priority: int, seen_s_ago: float, lifetime: int = 20) -> dict[str, object]:
    return {
        "priority": priority,
        "lastseen": (NOW - dt.timedelta(seconds=seen_s_ago)).isoformat(),
        "lifetime": lifetime,
    }


def test_active_unless_a_live_peer_has_higher_or_equal_priority() -> None:
    me = {"me": peer(100, 0)}
    assert leads(me, "me", 100, NOW)
    assert leads({**me, "young": peer(50, 1)}, "me", 100, NOW)
    assert not leads({**me, "old": peer(150, 1)}, "me", 100, NOW)
    assert not leads({**me, "twin": peer(100, 1)}, "me", 100, NOW)  # kopf pauses both on a tie
    assert leads({**me, "dead": peer(150, 30)}, "me", 100, NOW)  # its keep-alive expired
    assert leads({**me, "junk": "not a peer"}, "me", 100, NOW)


def test_an_earlier_start_always_has_the_higher_priority() -> None:
    rng = random.Random(1)
    assert priority_for_start(1_000.0, rng) > priority_for_start(1_001.0, rng)
