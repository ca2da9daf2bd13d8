"""The envelope loop on the real control plane: the real operator sends each node its envelope, the real agents
(simulated GPUs; the 1 Hz and 10 Hz loops in their own threads) steer their tolerant GPUs with it, and their
`capped` verdicts reach the operator.

The cluster fixtures are the operator tests' (kwok GPU nodes, an agent pod and bound token per node, the operator
in a thread): imported here, so both suites run the same cluster. Run with WATTWISE_REQUIRE_CLUSTER=1.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import pytest

from tests.operator.conftest import (  # noqa: F401 (pytest fixtures, used by name)
    Domain,
    budget_manifest,
    domain_factory,
    operator,
    operator_kubeconfig,
)
from tests.operator.harness import OperatorThread, SimAgent, wait_until
from tests.operator.test_cluster_budget import applied, classes, tiered_pods
from tests.support.controlplane import KubeApi

pytestmark = pytest.mark.cluster

CRITICAL, TOLERANT = (0, 1), (2, 3)  # GPU indices, as tiered_pods places the pods
CAP_W = 4_000.0  # 8 H100s flat out draw ~4.6 kW


def steering(agent: SimAgent) -> bool:
    status = agent.agent.envelopes.status
    return status.active and len(status.caps_w) == len(TOLERANT)


def holds_caps(agent: SimAgent) -> bool:
    caps = agent.agent.envelopes.status.caps_w
    limits = agent.limits()
    return all(-1.0 <= caps[g.uuid] - limits[g.index] <= 5.0 for g in agent.sim.gpus if g.index in TOLERANT)


def test_agents_share_their_nodes_envelope_under_the_real_operator(
    operator: OperatorThread,  # noqa: F811
    kube_api: KubeApi,
    domain_factory: Callable[..., Domain],  # noqa: F811
) -> None:
    domain = domain_factory(pods=tiered_pods)
    agents = list(domain.agents.values())
    name = f"agent-envelope-{secrets.token_hex(3)}"
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, CAP_W, mode="Enforce")):
        for agent in agents:
            agent.set_load(1.0)
        wait_until(lambda: all(steering(a) for a in agents), "every agent steers its tolerant GPUs", timeout=40)
        time.sleep(3)  # past the load step's first decisions
        facility, over = [], []
        for _ in range(30):  # 3 s at the fast loop's pace
            time.sleep(0.1)
            decision = operator.call(lambda op: op.controller.decision)
            facility.append(decision.budgets[name].facility_draw_w)
            for agent in agents:
                status = agent.agent.envelopes.status
                draw = sum(g.power_w for g in agent.sim.gpus)
                if status.active and status.watts is not None and draw > status.watts * 1.02:
                    over.append((agent.agent.config.node, draw, status.watts))
                assert [agent.limits()[i] for i in CRITICAL] == [700.0, 700.0]  # protected: never limited
        # each node stays inside its envelope, and the envelopes fill the budget up to its target, under the cap
        assert over == []
        assert max(facility) <= CAP_W and min(facility) >= 0.9 * CAP_W, facility
        for agent in agents:
            # the tolerant GPUs hold the envelope's caps (lower by at most the 5 W raise deadband, higher by at most
            # the 1 W tolerance), not their 1 Hz limits; read until a fast tick does not fall between the two reads
            wait_until(lambda agent=agent: holds_caps(agent), f"{agent.agent.config.node} holds its caps", timeout=3)
        # the agents' verdicts reach the operator: capped for the squeezed tolerant GPUs, absent for the others
        for node in domain.nodes:
            gpus = operator.call(lambda op, node=node: op.state.reports[node].report.gpus)
            verdicts = {g.index: g.capped for g in gpus}
            assert [verdicts[i] for i in CRITICAL] == [None, None] and [verdicts[i] for i in TOLERANT] == [True, True]
    # the budget is gone: the envelopes end with it, and every limit the agents set goes back to the default
    wait_until(
        lambda: all(a.limits() == [700.0] * 4 and not a.agent.envelopes.status.active for a in agents),
        "envelopes ended, limits restored",
        timeout=15,
    )
