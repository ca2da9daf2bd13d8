"""Fuzzing the HTTP layer: whatever arrives, the answer is a 2xx or a 4xx, never a 5xx.

Three sources: arbitrary JSON documents, valid requests with parts replaced by arbitrary JSON, and raw bytes.
A 2xx must also be a well-formed protocol answer (the scheduler would otherwise fail the pod).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.scheduler_extender.builders import SyncClient, args, budget, node, node_list_args, pod, state
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.settings import ExtenderSettings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
verbs = st.sampled_from(["/filter", "/prioritize"])


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[SyncClient]:
    app = create_app(ExtenderSettings(), refresh=False, clock=lambda: 1000.0)  # state never goes stale
    app.state.cache.update(
        state(
            [budget("r", guaranteed_headroom_w=2_000.0), budget("t", feasible=False)],
            {"n1": node(["r"]), "n2": node(["r", "t"], temperature_c=90.0), "n3": node([])},
        )
    )
    client = SyncClient(app)
    yield client
    client.close()


def check(response: Any, body: Any) -> None:
    assert response.status_code < 500, (response.status_code, body)
    assert response.status_code in (200, 400, 413), (response.status_code, response.text)
    out = response.json()
    if response.status_code != 200:
        assert out["problems"] or out["error"]
        return
    if isinstance(out, list):
        assert all(set(h) == {"Host", "Score"} and 0 <= h["Score"] <= 10 for h in out)
    else:
        assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
        assert out["Error"] == ""


@given(verb=verbs, body=json_values)
def test_arbitrary_json_never_5xx(fuzz_client: SyncClient, verb: str, body: Any) -> None:
    check(fuzz_client.post(verb, json=body), body)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


VALID = [
    args(pod(gpus=2, tier="critical"), ["n1", "n2", "n3", "ghost"]),
    args(pod(gpus=1, tier="tolerant", workload_class="batch"), ["n1", "n2"]),
    node_list_args(pod(gpus=1, tier="standard"), ["n1", "n2"], {"nvidia.com/gpu.product": "NVIDIA-L4"}),
]


@given(verb=verbs, data=st.data())
def test_mutated_valid_requests_never_5xx(fuzz_client: SyncClient, verb: str, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(VALID))
    path = data.draw(st.sampled_from(_paths(base)))
    body = _replace(base, path, data.draw(json_values))
    check(fuzz_client.post(verb, json=body), body)


@given(verb=verbs, raw=st.binary(max_size=200))
def test_raw_bytes_never_5xx(fuzz_client: SyncClient, verb: str, raw: bytes) -> None:
    check(fuzz_client.post(verb, content=raw, headers={"content-type": "application/json"}), raw)


@given(
    verb=verbs,
    names=st.lists(st.sampled_from(["n1", "n2", "n3", "ghost", "x.y", "UPPER", "", "-a", "a" * 300]), max_size=8),
    gpus=st.integers(-2, 2000) | st.text(max_size=6),
    tier=st.none() | st.sampled_from(["critical", "standard", "tolerant", "CRITICAL", " tolerant ", "gold", ""]),
)
def test_plausible_requests_never_5xx(
    fuzz_client: SyncClient, verb: str, names: list[str], gpus: Any, tier: Any
) -> None:
    body = args(pod(gpus=gpus, tier=tier), names)
    check(fuzz_client.post(verb, json=body), body)
