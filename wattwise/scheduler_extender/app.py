"""HTTP glue: the FastAPI app kube-scheduler calls (`POST /filter`, `/prioritize`) plus probes and metrics.

Bodies are read raw and parsed by `protocol` rather than by FastAPI's model binding, so every malformed
request gets the same 400 shape, `{"error": ..., "problems": [...]}`, and the hot path skips a second
validation of thousands of node names. Status codes: 400 malformed, 405 wrong method (FastAPI), 413 too
large, 415 not JSON; nothing the scheduler can send produces a 5xx (see `service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from wattwise.scheduler_extender.metrics import ExtenderMetrics
from wattwise.scheduler_extender.protocol import BadRequest
from wattwise.scheduler_extender.reservations import ReservationBook
from wattwise.scheduler_extender.service import ExtenderService, Verb
from wattwise.scheduler_extender.settings import ExtenderSettings
from wattwise.scheduler_extender.state_cache import StateCache, refresh_forever

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(status: int, error: str, problems: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "problems": problems or []}, status_code=status)


def create_app(
    settings: ExtenderSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    refresh: bool = True,
    clock: Callable[[], float] = time.monotonic,
    operator_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build an extender. `refresh=False` leaves the state cache to the caller (tests, benchmarks);
    `operator_transport` replaces the network under the refresher's HTTP client (tests)."""
    settings = settings or ExtenderSettings()
    registry = registry or CollectorRegistry()
    book = ReservationBook(settings.reservation_ttl_s)
    cache = StateCache(book, clock)
    metrics = ExtenderMetrics(registry, cache.age_s)
    service = ExtenderService(cache, book, metrics, settings.placement(), clock)
    refresher: dict[str, asyncio.Task[None]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not refresh:
            yield
            return
        async with httpx.AsyncClient(timeout=settings.fetch_timeout_s, transport=operator_transport) as client:
            task = asyncio.create_task(
                refresh_forever(cache, client, settings.operator_url, settings.refresh_interval_s, metrics),
                name="wattwise-live-state-refresher",
            )
            refresher["task"] = task
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="wattwise scheduler extender", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service
    app.state.cache = cache
    app.state.book = book
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.refresher = refresher

    async def answer(verb: Verb, request: Request) -> Response:
        started = time.perf_counter()
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        response: Response
        try:
            if ctype != "application/json":
                response = _problem(415, f"Content-Type must be application/json, got {ctype!r}")
            else:
                raw = await _read_body(request, settings.max_body_bytes)
                payload: Any = service.handle(verb, raw)
                response = JSONResponse(payload)
        except _TooLarge:
            response = _problem(413, f"body larger than {settings.max_body_bytes} bytes")
        except BadRequest as exc:
            response = _problem(400, f"invalid ExtenderArgs for {verb}", exc.problems)
        except Exception:  # parsing bug: still the scheduler's request was the trigger, never a 5xx
            log.exception("%s: cannot process request", verb)
            metrics.internal_errors.labels(verb).inc()
            response = _problem(400, f"{verb}: request could not be processed (logged by the extender)")
        metrics.requests.labels(verb, f"{response.status_code // 100}xx").inc()
        metrics.latency.labels(verb).observe(time.perf_counter() - started)
        return response

    @app.post("/filter")
    async def filter_nodes(request: Request) -> Response:
        return await answer("filter", request)

    @app.post("/prioritize")
    async def prioritize_nodes(request: Request) -> Response:
        return await answer("prioritize", request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        # Stale or missing power data is not "unready": the extender still answers (pass-through) and an
        # unready extender would block scheduling outright. Unready only if the refresher itself has died.
        task = refresher.get("task")
        age = cache.age_s()
        body = {
            "state_age_seconds": None if age == float("inf") else round(age, 3),
            "stale": age > settings.stale_after_s,
            "reservations": len(book),
            "last_error": cache.last_error,
        }
        if refresh and (task is None or task.done()):
            return JSONResponse({"status": "refresher not running", **body}, status_code=503)
        return JSONResponse({"status": "ok", **body})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
