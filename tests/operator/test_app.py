"""The HTTP surface with a fake TokenReview: every refusal has its status and reason, and refusals store nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.operator import builders as b
from wattwise.live_state import LiveState
from wattwise.operator.app import Service, create_app, get_service
from wattwise.operator.auth import AgentAuthenticator, Identity, TokenReviewCache
from wattwise.operator.controller import Controller
from wattwise.operator.ingest import Ingest
from wattwise.operator.metrics import OperatorMetrics
from wattwise.operator.records import BudgetRecord
from wattwise.scheduler_extender.state_cache import parse_snapshot
from wattwise.telemetry import wire

AGENT = "system:serviceaccount:wattwise-system:wattwise-agent"
POD_NAME = "authentication.kubernetes.io/pod-name"
NODE_NAME = "authentication.kubernetes.io/node-name"

TOKENS = {
    "agent-n1": Identity(True, AGENT, {POD_NAME: ["agent-a"], NODE_NAME: ["n1"]}),
    "agent-ghost": Identity(True, AGENT, {POD_NAME: ["agent-g"], NODE_NAME: ["ghost"]}),
    "agent-unbound": Identity(True, AGENT, {}),
    "agent-old-cluster": Identity(True, AGENT, {POD_NAME: ["agent-a"]}),
    "someone-else": Identity(True, "system:serviceaccount:default:app", {POD_NAME: ["x"], NODE_NAME: ["n1"]}),
}


class Harness:
    def __init__(self) -> None:
        self.reviews: list[str] = []
        self.state = b.cluster({"n1": {"rack": "r1"}}, {"rack": b.budget_spec(5_000, mode="Enforce")}, received_at=0.0)
        self.controller = Controller(self.state)
        self.leading = True
        self.registry = CollectorRegistry()
        self.metrics = OperatorMetrics(self.registry, self.controller)

        async def review(token: str) -> Identity:
            self.reviews.append(token)
            return TOKENS.get(token, Identity(False, error="token not valid"))

        async def pod_node(namespace: str, pod: str) -> str | None:
            return {"agent-a": "n1"}.get(pod)

        auth = AgentAuthenticator(TokenReviewCache(review), [AGENT], pod_node)
        self.ingest = Ingest(self.state, self.controller, auth, leading=lambda: self.leading, clock=lambda: 50.0)
        self.service = Service(self.ingest, self.controller, self.metrics, self.registry, leading=lambda: self.leading)

    def tick(self) -> None:
        self.controller.tick(50.5, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(harness.service)
    app.dependency_overrides[get_service] = lambda: harness.service
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://operator") as c:
        yield c


async def post(client: httpx.AsyncClient, token: str | None, body: bytes) -> tuple[int, str]:
    headers = wire.bearer(token) if token is not None else {}
    response = await client.post(
        wire.REPORT_PATH, content=body, headers={"Content-Type": "application/json", **headers}
    )
    return response.status_code, response.json().get("error", "") if response.status_code != 200 else ""


GOOD = b.report("n1", [b.gpu("G0"), b.gpu("G1", 1)]).to_json()


@pytest.mark.parametrize(
    ("token", "body", "status", "reason"),
    [
        (None, GOOD, 401, "missing Authorization"),
        ("forged", GOOD, 401, "rejected by TokenReview: token not valid"),
        ("someone-else", GOOD, 403, "not the node agent's ServiceAccount"),
        ("agent-unbound", GOOD, 403, "not bound to a pod"),
        ("agent-n1", b.report("n2", [b.gpu("G0")]).to_json(), 403, "runs on node 'n1', not 'n2'"),
        ("agent-ghost", b.report("ghost", [b.gpu("G0")]).to_json(), 404, "node 'ghost' is not a node"),
        ("agent-n1", b"{not json", 422, "not a telemetry.wattwise.dev/v1 NodeReport"),
        ("agent-n1", b'{"node": "n1"}', 422, "agent: Field required"),
        ("agent-n1", GOOD.replace(b"telemetry.wattwise.dev/v1", b"telemetry.wattwise.dev/v9"), 400, "unsupported"),
    ],
    ids=["no-token", "forged", "other-sa", "unbound", "wrong-node", "unknown-node", "not-json", "missing", "version"],
)
async def test_refusals(
    harness: Harness, client: httpx.AsyncClient, token: str | None, body: bytes, status: int, reason: str
) -> None:
    assert (await post(client, token, body))[0] == status
    assert reason in (await post(client, token, body))[1]
    assert harness.state.reports == {}


async def test_report_then_reply_after_the_first_tick(harness: Harness, client: httpx.AsyncClient) -> None:
    status, reason = await post(client, "agent-n1", GOOD)
    assert (status, "no control decision" in reason) == (503, True)  # stored, but nothing decided yet
    assert harness.state.reports["n1"].agent_pod == "wattwise-system/agent-a"
    harness.tick()
    newer = b.report("n1", [b.gpu("G0"), b.gpu("G1", 1)], sequence=2).to_json()
    response = await client.post(wire.REPORT_PATH, content=newer, headers=wire.bearer("agent-n1"))
    assert response.status_code == 200
    reply = wire.ReportReply.model_validate_json(response.content)
    assert set(reply.gpus) == {"G0", "G1"} and all(d.enforced for d in reply.gpus.values())
    # Both GPUs run standard work under an Enforce budget: the node's envelope protects them both.
    assert reply.envelope is not None and sorted(reply.envelope.protected) == ["G0", "G1"]
    assert reply.envelope.flexible == [] and reply.envelope.valid_for_seconds == 3.0
    # A replay of an older report from the same agent run is refused.
    assert (await post(client, "agent-n1", GOOD))[0] == 409
    assert harness.reviews == ["agent-n1"]  # one TokenReview, then the cache
    ok = harness.registry.get_sample_value("wattwise_operator_reports_total", {"outcome": "ok"})
    assert ok == 1.0


async def test_node_binding_falls_back_to_the_pod_when_the_review_lacks_the_node(client: httpx.AsyncClient) -> None:
    assert (await post(client, "agent-old-cluster", GOOD))[0] == 503  # accepted (no decision yet), bound via pod lookup


async def test_standby_refuses_everything(harness: Harness, client: httpx.AsyncClient) -> None:
    harness.leading = False
    assert await post(client, "agent-n1", GOOD) == (503, "this operator replica is on standby; another one is active")
    assert (await client.get("/v1/state")).status_code == 503
    assert (await client.get("/readyz")).status_code == 503
    assert harness.reviews == []


async def test_live_state_and_probes(harness: Harness, client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/state")).status_code == 503
    assert (await client.get("/readyz")).status_code == 503
    await post(client, "agent-n1", GOOD)
    harness.tick()
    raw = (await client.get("/v1/state")).content
    state = LiveState.model_validate_json(raw)
    snapshot = parse_snapshot(raw, fetched_at=0.0)  # what the scheduler extender does with it
    assert set(snapshot.budgets) == {"rack"} and set(snapshot.nodes) == {"n1"}
    assert [v.name for v in state.budgets] == ["rack"]
    assert state.nodes["n1"].budgets == ["rack"] and len(state.nodes["n1"].gpus) == 2
    assert (await client.get("/readyz")).status_code == 200 and (await client.get("/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'wattwise_budget_cap_watts{budget="rack"} 5000.0' in metrics
    assert "wattwise_operator_tick_seconds_bucket" in metrics
    envelope = harness.controller.decision.envelopes["n1"] if harness.controller.decision else None
    assert envelope is not None and envelope.watts > 0
    assert f'wattwise_node_envelope_watts{{node="n1"}} {envelope.watts}' in metrics
    assert 'wattwise_node_envelope_gpus{node="n1",role="protected"} 2.0' in metrics
    assert 'wattwise_node_envelope_gpus{node="n1",role="flexible"} 0.0' in metrics


async def test_a_monitored_node_has_no_envelope_in_its_reply_or_metrics(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    harness.state.put_budget(BudgetRecord("rack", b.budget_spec(5_000, mode="Monitor"), 2, "uid-rack"))
    await post(client, "agent-n1", GOOD)
    harness.tick()
    newer = b.report("n1", [b.gpu("G0"), b.gpu("G1", 1)], sequence=2).to_json()
    response = await client.post(wire.REPORT_PATH, content=newer, headers=wire.bearer("agent-n1"))
    reply = wire.ReportReply.model_validate_json(response.content)
    assert response.status_code == 200 and reply.envelope is None and not reply.gpus["G0"].enforced
    assert b'"envelope"' not in response.content
    assert "wattwise_node_envelope_watts{" not in (await client.get("/metrics")).text
