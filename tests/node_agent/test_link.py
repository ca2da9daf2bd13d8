"""The agent's standing with the operator over time, and the back-off between failed reports."""

from __future__ import annotations

import random

from wattwise.node_agent.link import Backoff, OperatorLink
from wattwise.telemetry.messages import FailSafePolicy, ReportReply
from wattwise.telemetry.vocabulary import AgentMode

POLICY = FailSafePolicy(grace_period_seconds=30, limit_fraction=0.7)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    b, rng = Backoff(base_s=1, max_s=15), random.Random(1)
    for n, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 15), (40, 15)]:
        delays = [b.delay(n, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not lock-step


def test_never_connected_grace_then_fail_safe() -> None:
    link = OperatorLink(100.0, POLICY, rng=random.Random(0))
    assert link.mode(100.0) is AgentMode.GRACE
    link.failed(101.0, "refused")
    assert link.mode(129.9) is AgentMode.GRACE
    assert link.mode(130.0) is AgentMode.FAIL_SAFE


def test_grace_counts_from_the_last_reply_and_recovers() -> None:
    link = OperatorLink(0.0, POLICY, rng=random.Random(0))
    reply = ReportReply(fail_safe=FailSafePolicy(grace_period_seconds=10, limit_fraction=0.5))
    link.succeeded(5.0, reply, 1.0)
    assert link.mode(6.0) is AgentMode.CONNECTED and link.fail_safe == reply.fail_safe
    for t in (6.0, 8.0, 12.0):  # failing repeatedly does not extend the grace period
        link.failed(t, "timeout")
    assert link.mode(14.9) is AgentMode.GRACE
    assert link.mode(15.0) is AgentMode.FAIL_SAFE
    assert link.mode_since(15.0) == 15.0
    link.succeeded(40.0, reply, 1.0)
    assert link.mode(40.0) is AgentMode.CONNECTED and link.failures == 0


def test_due_respects_backoff_and_the_operators_interval() -> None:
    link = OperatorLink(0.0, None, backoff=Backoff(base_s=4, max_s=4), rng=random.Random(0))
    assert link.due(0.0)
    delay = link.failed(0.0, "x")
    assert 2 <= delay <= 4 and not link.due(delay - 0.1) and link.due(delay)
    link.succeeded(10.0, ReportReply(next_report_interval_seconds=5), 1.0)
    assert not link.due(14.9) and link.due(14.99) and link.due(15.0)


def test_no_fail_safe_policy_means_grace_forever() -> None:
    link = OperatorLink(0.0, None)
    link.failed(1.0, "x")
    assert link.mode(1e6) is AgentMode.GRACE


def test_operator_null_fail_safe_overrides_the_flags() -> None:
    link = OperatorLink(0.0, POLICY)
    link.succeeded(1.0, ReportReply(fail_safe=None), 1.0)
    link.failed(2.0, "x")
    assert link.mode(1e6) is AgentMode.GRACE


def test_disabled_is_standalone() -> None:
    link = OperatorLink(0.0, POLICY, enabled=False)
    assert link.mode(1e6) is AgentMode.STANDALONE and not link.due(1e6)
