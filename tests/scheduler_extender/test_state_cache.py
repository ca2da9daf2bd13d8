"""Fetching the operator's live state: success swaps the snapshot, faults keep the old one and are counted."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry

from tests.scheduler_extender.builders import budget, node, state
from tests.scheduler_extender.conftest import FakeClock
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.metrics import ExtenderMetrics
from wattwise.scheduler_extender.reservations import BudgetClaim, ReservationBook
from wattwise.scheduler_extender.settings import ExtenderSettings
from wattwise.scheduler_extender.state_cache import StateCache, fetch_once

LIVE = state([budget("r")], {"n": node(["r"], pods=["team/seen"])})


def _fetch(handler: httpx.MockTransport, cache: StateCache) -> tuple[bool, ExtenderMetrics]:
    metrics = ExtenderMetrics(CollectorRegistry(), cache.age_s)

    async def go() -> bool:
        async with httpx.AsyncClient(transport=handler) as client:
            return await fetch_once(cache, client, "http://operator:8080/", metrics)

    return asyncio.run(go()), metrics


def test_a_good_document_becomes_the_snapshot_and_releases_seen_pods() -> None:
    clock = FakeClock()
    book = ReservationBook(ttl_s=60)
    book.hold("team/seen", ["n"], {"r": BudgetClaim(700, 700)}, now=clock.now)
    book.hold("team/waiting", ["n"], {"r": BudgetClaim(700, 700)}, now=clock.now)
    cache = StateCache(book, clock)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=LIVE.model_dump_json())

    ok, metrics = _fetch(httpx.MockTransport(handler), cache)
    assert ok and seen == ["http://operator:8080/v1/state"]
    assert cache.snapshot is not None and cache.snapshot.nodes["n"].budgets == ("r",)
    assert book.get("team/seen") is None and book.get("team/waiting") is not None
    assert metrics.registry.get_sample_value("wattwise_extender_state_refreshes_total", {"result": "ok"}) == 1


def test_an_unreachable_operator_keeps_the_previous_snapshot() -> None:
    clock = FakeClock()
    cache = StateCache(ReservationBook(60), clock)
    cache.update(LIVE)
    clock.advance(3)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ok, metrics = _fetch(httpx.MockTransport(handler), cache)
    assert not ok and cache.snapshot is not None and cache.age_s() == 3
    assert "connection refused" in cache.last_error
    assert metrics.registry.get_sample_value("wattwise_extender_state_refreshes_total", {"result": "error"}) == 1


def test_a_server_error_is_a_failed_fetch() -> None:
    cache = StateCache(ReservationBook(60), FakeClock())
    ok, _ = _fetch(httpx.MockTransport(lambda r: httpx.Response(503, text="starting")), cache)
    assert not ok and cache.snapshot is None


def test_an_invalid_document_is_rejected_and_counted() -> None:
    cache = StateCache(ReservationBook(60), FakeClock())
    bad = LIVE.model_dump(mode="json")
    bad["nodes"]["n"]["budgets"] = ["missing"]
    ok, metrics = _fetch(httpx.MockTransport(lambda r: httpx.Response(200, json=bad)), cache)
    assert not ok and cache.snapshot is None
    assert "unknown budget" in cache.last_error
    assert metrics.registry.get_sample_value("wattwise_extender_state_refreshes_total", {"result": "invalid"}) == 1


def test_age_is_infinite_before_the_first_fetch() -> None:
    assert StateCache(ReservationBook(60), FakeClock()).age_s() == float("inf")


async def test_the_app_refreshes_in_the_background_and_stops_with_it() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=LIVE.model_dump_json())

    settings = ExtenderSettings(operator_url="http://operator:8080", refresh_interval_s=0.01)
    app = create_app(settings, operator_transport=httpx.MockTransport(handler))
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.01)
        assert app.state.cache.snapshot is not None and calls[:2] == ["/v1/state", "/v1/state"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["stale"] is False
    settled = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == settled  # the refresher stopped with the app


async def test_an_unexpected_fault_does_not_stop_the_refresher() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise RuntimeError("a bug, not a network fault")

    app = create_app(ExtenderSettings(refresh_interval_s=0.01), operator_transport=httpx.MockTransport(handler))
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(calls) >= 3 and not app.state.refresher["task"].done()
        errors = app.state.metrics.registry.get_sample_value(
            "wattwise_extender_state_refreshes_total", {"result": "error"}
        )
        assert errors >= 3


async def test_readyz_is_503_when_the_refresher_is_gone() -> None:
    app = create_app(
        ExtenderSettings(refresh_interval_s=0.01), operator_transport=httpx.MockTransport(lambda r: httpx.Response(503))
    )
    async with app.router.lifespan_context(app):
        app.state.refresher["task"].cancel()
        await asyncio.sleep(0.01)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "refresher not running"
