"""Node envelopes on the real control plane: a real agent's report is answered with its node's envelope while its
budget enforces (critical GPUs protected, tolerant ones flexible), and without one once the budget only monitors;
a report's `capped` verdict reaches the policy.

These tests need only the operator's replies: what the agent then does with an envelope is the agent's tests'.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import secrets
from collections.abc import Callable

import httpx
import pytest

from tests.operator.conftest import Domain, budget_manifest
from tests.operator.harness import OperatorThread, SimAgent, wait_until
from tests.operator.test_cluster_budget import applied, classes, tiered_pods
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.operator.policy_inputs import TickInputs
from wattwise.policy import Decision
from wattwise.telemetry import messages, wire

pytestmark = pytest.mark.cluster

#: the floor of the tolerant class in `classes()`: 0.3 x an H100's 700 W default limit
TOLERANT_FLOOR_W = 210.0


def gpu_uuids(operator: OperatorThread, node: str) -> list[str]:
    """The node's GPUs in index order, as its agent reports them."""
    gpus = operator.call(lambda op: op.state.reports[node].report.gpus)
    return [g.uuid for g in sorted(gpus, key=lambda g: g.index)]


def with_tiers(agent: SimAgent) -> messages.ReportReply | None:
    """The agent's latest reply once it carries an envelope with the pods' tiers resolved (two tolerant GPUs)."""
    replies = agent.reporter.received()
    last = replies[-1] if replies else None
    return last if last is not None and last.envelope is not None and len(last.envelope.flexible) == 2 else None


def test_a_real_agents_report_is_answered_with_its_nodes_envelope(
    operator: OperatorThread, kube_api: KubeApi, control_plane: ControlPlane, domain_factory: Callable[..., Domain]
) -> None:
    domain = domain_factory(pods=tiered_pods)
    name = f"op-envelope-{secrets.token_hex(3)}"
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, 20_000, mode="Enforce")):
        for node, agent in domain.agents.items():
            reply = wait_until(functools.partial(with_tiers, agent), f"{node}: a reply with its envelope", timeout=30)
            assert reply.envelope is not None
            uuids = gpu_uuids(operator, node)
            assert sorted(reply.envelope.protected) == sorted(uuids[:2])  # the critical chat pod's GPUs
            assert sorted(g.uuid for g in reply.envelope.flexible) == sorted(uuids[2:])  # the tolerant batch pod's
            for g in reply.envelope.flexible:
                assert TOLERANT_FLOOR_W == g.floor_watts <= g.ceiling_watts <= 700.0
            assert reply.envelope.watts >= 2 * TOLERANT_FLOOR_W
            assert reply.envelope.valid_for_seconds == 3.0  # three 1 s ticks
            assert all(reply.gpus[u].enforced for u in uuids)
        node = domain.nodes[0]
        metrics = httpx.get(operator.url + "/metrics", timeout=10).text
        assert f'wattwise_node_envelope_gpus{{node="{node}",role="flexible"}} 2.0' in metrics
        assert f'wattwise_node_envelope_watts{{node="{node}"}}' in metrics

        # Monitor: Wattwise owns no limit there, so the node gets no envelope either.
        control_plane.kubectl("patch", "powerbudget", name, "--type=merge", "-p", '{"spec":{"mode":"Monitor"}}')
        agent = domain.agents[node]
        seen = len(agent.reporter.received())

        def monitored() -> bool:
            latest = agent.reporter.received()[seen:]
            return any(r.envelope is None and not any(d.enforced for d in r.gpus.values()) for r in latest)

        wait_until(monitored, "a reply without enforcement or envelope", timeout=10)
        metrics = httpx.get(operator.url + "/metrics", timeout=10).text
        assert f'wattwise_node_envelope_watts{{node="{node}"}}' not in metrics


def test_a_reports_capped_verdict_reaches_the_policy(
    operator: OperatorThread, kube_api: KubeApi, domain_factory: Callable[..., Domain]
) -> None:
    """The node's agent is replaced by reports posted with its own token, one tolerant GPU marked capped: the
    operator takes the verdict (the policy then asks that GPU's ceiling for it) and keeps answering with the
    node's envelope."""
    domain = domain_factory(nodes=1, pods=tiered_pods)
    node = domain.nodes[0]
    name = f"op-capped-{secrets.token_hex(3)}"
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, 20_000, mode="Enforce")):
        wait_until(lambda: with_tiers(domain.agents[node]), "a reply with the node's envelope", timeout=30)
        domain.agents[node].stop()
        last = operator.call(lambda op: op.state.reports[node].report)
        uuids = gpu_uuids(operator, node)
        tolerant = uuids[2]
        started = dt.datetime.now(dt.UTC)  # a new agent run: its sequence starts again
        sequence = itertools.count()

        def post() -> httpx.Response:
            now = dt.datetime.now(dt.UTC)
            gpus = [g.model_copy(update={"sampled_at": now, "capped": g.uuid == tolerant or None}) for g in last.gpus]
            report = last.model_copy(
                update={
                    "agent": last.agent.model_copy(update={"started_at": started}),
                    "sequence": next(sequence),
                    "sent_at": now,
                    "gpus": gpus,
                }
            )
            return httpx.post(
                operator.url + wire.REPORT_PATH, content=report.to_json(), headers=wire.bearer(domain.tokens[node])
            )

        def taken() -> tuple[httpx.Response, TickInputs, Decision] | None:
            answer = post()
            assert answer.status_code == 200, answer.text
            inputs, decision = operator.call(lambda op: (op.controller.inputs, op.controller.decision))
            if inputs is None or decision is None or tolerant not in inputs.gpus or not inputs.gpus[tolerant].capped:
                return None
            return answer, inputs, decision

        answer, inputs, decision = wait_until(taken, "the capped verdict in the policy's inputs", interval=0.5)
        assert [inputs.gpus[u].capped for u in uuids if u != tolerant] == [None] * 3  # not sent: judged as before
        assert decision.demand_w[tolerant] == inputs.gpus[tolerant].ceiling == 700.0  # held back: asks its ceiling
        reply = messages.decode_reply(answer.content)
        assert reply.envelope is not None and sorted(g.uuid for g in reply.envelope.flexible) == sorted(uuids[2:])
