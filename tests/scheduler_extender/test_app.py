"""The HTTP surface kube-scheduler talks to: one behaviour per test, status and body asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI

from tests.scheduler_extender.builders import SyncClient, args, budget, node, node_list_args, pod, state
from tests.scheduler_extender.conftest import FakeClock
from wattwise.scheduler_extender import service as service_module

RACKS = state(
    [budget("rack-a", guaranteed_headroom_w=1_000.0), budget("rack-b", guaranteed_headroom_w=8_000.0)],
    {"a1": node(["rack-a"]), "b1": node(["rack-b"])},
)


@pytest.fixture(autouse=True)
def live(app: FastAPI) -> None:
    app.state.cache.update(RACKS)


def sample(app: FastAPI, name: str, **labels: str) -> float | None:
    value: float | None = app.state.metrics.registry.get_sample_value(name, labels)
    return value


def test_filter_with_node_names_answers_in_the_go_field_names(client: SyncClient) -> None:
    r = client.post("/filter", json=args(pod(gpus=2), ["a1", "b1"]))
    assert r.status_code == 200
    assert r.json() == {
        "Nodes": None,
        "NodeNames": ["b1"],
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {
            "a1": "wattwise: PowerBudget rack-a has 1000 W guaranteed headroom; "
            "this critical pod needs 1400 W (2 GPU x 700 W x PUE 1)"
        },
        "Error": "",
    }


def test_filter_with_a_node_list_returns_the_passing_node_objects(client: SyncClient) -> None:
    body = node_list_args(pod(gpus=2), ["a1", "b1"])
    r = client.post("/filter", json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["NodeNames"] is None
    assert out["Nodes"]["items"] == [body["Nodes"]["items"][1]]
    assert list(out["FailedAndUnresolvableNodes"]) == ["a1"]


def test_an_empty_node_list_as_go_marshals_it(client: SyncClient) -> None:
    r = client.post("/filter", json={"Pod": pod(), "Nodes": {"metadata": {}, "items": None}, "NodeNames": None})
    assert r.status_code == 200 and r.json()["Nodes"] == {"metadata": {}, "items": []}


def test_prioritize_returns_a_host_priority_list(client: SyncClient) -> None:
    r = client.post("/prioritize", json=args(pod(gpus=1, tier="tolerant"), ["a1", "b1"]))
    assert r.status_code == 200
    # tolerant packs the tight rack: a1 h = 1000/9000 -> 10 x 0.89; b1 h = 8000/9000 -> 10 x 0.11
    assert r.json() == [{"Host": "a1", "Score": 9}, {"Host": "b1", "Score": 1}]


def test_go_decoder_key_case_is_accepted(client: SyncClient) -> None:
    r = client.post("/filter", json={"pod": pod(gpus=2), "nodenames": ["a1", "b1"]})
    assert r.status_code == 200 and r.json()["NodeNames"] == ["b1"]


@pytest.mark.parametrize(
    ("case", "body", "problem"),
    [
        ("not JSON", b"{not json", "body is not JSON"),
        ("not UTF-8", b"\xff\xfe{", "body is not JSON"),
        ("JSON but not an object", b"[1, 2]", "must be a JSON object"),
        ("missing Pod", json.dumps({"NodeNames": ["a1"]}).encode(), "Pod: required"),
        ("Pod of the wrong type", json.dumps({"Pod": "p", "NodeNames": []}).encode(), "Pod: must be an object"),
        ("Pod without a name", json.dumps({"Pod": {"metadata": {}, "spec": {}}, "NodeNames": []}).encode(), "name"),
        (
            "NodeNames not strings",
            json.dumps({"Pod": pod(), "NodeNames": [1, 2]}).encode(),
            "NodeNames: must be a list of strings",
        ),
        ("duplicate node", json.dumps(args(pod(), ["a1", "a1"])).encode(), "duplicate node name 'a1'"),
        ("invalid node name", json.dumps(args(pod(), ["Not_A_Node"])).encode(), "is not a valid node name"),
        ("newline in a node name", json.dumps(args(pod(), ["a1\nb1"])).encode(), "is not a valid node name"),
        ("trailing newline", json.dumps(args(pod(), ["a1", "b1\n"])).encode(), "is not a valid node name"),
        ("neither form", json.dumps({"Pod": pod()}).encode(), "one of NodeNames"),
        ("both forms", json.dumps({**node_list_args(pod(), ["a1"]), "NodeNames": ["a1"]}).encode(), "not both"),
        ("Nodes not a NodeList", json.dumps({"Pod": pod(), "Nodes": [1]}).encode(), "v1.NodeList"),
        (
            "annotations of the wrong type",
            json.dumps(args({**pod(), "metadata": {"name": "p", "annotations": 3}}, [])).encode(),
            "annotations",
        ),
        ("fractional GPUs", json.dumps(args(pod(gpus="1.5"), ["a1"])).encode(), "not a whole number of GPUs"),
    ],
)
def test_malformed_requests_get_400_with_a_reason(client: SyncClient, case: str, body: bytes, problem: str) -> None:
    for verb in ("/filter", "/prioritize"):
        r = client.post(verb, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, case
        assert r.json()["error"].startswith("invalid ExtenderArgs")
        assert any(problem in p for p in r.json()["problems"]), (case, r.json())


def test_wrong_method_is_405(client: SyncClient) -> None:
    assert client.get("/filter").status_code == 405


def test_non_json_content_type_is_415(client: SyncClient) -> None:
    r = client.post("/filter", content=b"Pod=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_oversized_body_is_413(make_app: Any) -> None:
    c = SyncClient(make_app(max_body_bytes=1024))
    try:
        r = c.post("/filter", json=args(pod(), [f"n{i}" for i in range(200)]))
        assert r.status_code == 413
    finally:
        c.close()


def test_a_bug_in_placement_degrades_to_pass_through_not_500(
    client: SyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(service_module, "decide", broken)
    r = client.post("/filter", json=args(pod(gpus=8), ["a1", "b1"]))
    assert r.status_code == 200
    assert r.json()["NodeNames"] == ["a1", "b1"] and r.json()["Error"] == ""
    assert client.post("/prioritize", json=args(pod(), ["a1"])).json() == [{"Host": "a1", "Score": 5}]
    assert sample(app, "wattwise_extender_internal_errors_total", verb="filter") == 1


def test_stale_state_passes_every_node_and_counts_it(client: SyncClient, app: FastAPI, clock: FakeClock) -> None:
    clock.advance(60)
    r = client.post("/filter", json=args(pod(gpus=8), ["a1", "b1"]))
    assert r.json()["NodeNames"] == ["a1", "b1"] and r.json()["FailedAndUnresolvableNodes"] == {}
    assert sample(app, "wattwise_extender_degraded_decisions_total", verb="filter") == 1
    assert (
        sample(app, "wattwise_extender_decisions_total", verb="filter", tier="critical", outcome="pass_degraded") == 2
    )
    assert sample(app, "wattwise_extender_state_age_seconds") == pytest.approx(60.0)


def test_decisions_are_counted_by_tier_and_outcome(client: SyncClient, app: FastAPI) -> None:
    client.post("/filter", json=args(pod(gpus=2), ["a1", "b1"]))
    labels = {"verb": "filter", "tier": "critical"}
    assert sample(app, "wattwise_extender_decisions_total", **labels, outcome="pass") == 1
    assert sample(app, "wattwise_extender_decisions_total", **labels, outcome="reject_headroom") == 1
    assert sample(app, "wattwise_extender_decisions_total", verb="prioritize", tier="tolerant", outcome="pass") == 0
    assert sample(app, "wattwise_extender_requests_total", verb="filter", code="2xx") == 1
    assert sample(app, "wattwise_extender_request_duration_seconds_count", verb="filter") == 1


def test_a_burst_of_critical_pods_never_overcommits_guaranteed_headroom(client: SyncClient, app: FastAPI) -> None:
    """rack-b has 8,000 W and rack-a 1,000 W: of fifty 1-GPU critical pods (700 W each), 11 get through."""
    admitted = []
    for i in range(50):
        r = client.post("/filter", json=args(pod(f"burst-{i}", gpus=1), ["a1", "b1"]))
        if r.json()["NodeNames"]:
            admitted.append(i)
            client.post("/prioritize", json=args(pod(f"burst-{i}", gpus=1), r.json()["NodeNames"]))
    # The first pod may land in either rack, so it holds 700 W in both; the next ten fill rack-b (7,700 W).
    claims = app.state.book.totals()
    assert claims["rack-b"].guaranteed_w == 7_700.0 and claims["rack-a"].guaranteed_w == 700.0
    assert admitted == list(range(11))
    assert sample(app, "wattwise_extender_reservations") == len(admitted)


def test_retrying_a_pod_does_not_count_it_twice(client: SyncClient) -> None:
    for _ in range(5):
        r = client.post("/filter", json=args(pod("same", gpus=8), ["b1"]))  # 5,600 W of 8,000 W
        assert r.json()["NodeNames"] == ["b1"]


def test_reservation_released_when_the_telemetry_shows_the_pod(client: SyncClient, app: FastAPI) -> None:
    client.post("/filter", json=args(pod("big", gpus=8), ["b1"]))
    assert client.post("/filter", json=args(pod("next", gpus=8), ["b1"])).json()["NodeNames"] == []
    running = state(
        [budget("rack-a", guaranteed_headroom_w=1_000.0), budget("rack-b", guaranteed_headroom_w=8_000.0)],
        {"a1": node(["rack-a"]), "b1": node(["rack-b"], pods=["team/big"])},
    )
    app.state.cache.update(running)  # (a real operator would also have lowered rack-b's headroom)
    assert len(app.state.book) == 0
    assert client.post("/filter", json=args(pod("next", gpus=8), ["b1"])).json()["NodeNames"] == ["b1"]


def test_healthz(client: SyncClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_state_age_without_failing_when_stale(client: SyncClient, clock: FakeClock) -> None:
    clock.advance(30)
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["stale"] is True and r.json()["state_age_seconds"] == pytest.approx(30.0)


def test_metrics_are_exposed_in_text_format(client: SyncClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert 'wattwise_extender_decisions_total{outcome="reject_thermal",tier="tolerant",verb="filter"} 0.0' in r.text


def test_an_outage_is_logged_once_not_per_call(
    client: SyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.advance(60)
    for i in range(3):
        client.post("/filter", json=args(pod(f"p{i}"), ["a1"]))
        client.post("/filter", json=args(pod(f"q{i}", scheduler="default-scheduler"), ["a1"]))
    warnings = [r for r in caplog.records if "placing without power data" in r.getMessage()]
    assert len(warnings) == 1
