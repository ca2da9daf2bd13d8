"""The operator's HTTP surface (FastAPI, served by uvicorn on the operator's event loop).

- `POST /v1/reports`: agent reports in, limits out (`ingest`).
- `GET /v1/state`: the live state for the scheduler extender and `wattwise status` (read-only, no auth: it holds
  no secrets and is served inside the cluster only; put a NetworkPolicy in front of it where that matters).
- `GET /metrics`, `/healthz` (the loop is ticking), `/readyz` (active replica with a decision to serve).

Handlers are glue: everything they decide lives in `ingest` and `controller`. The app's collaborators come from
one dependency, `get_service`, which tests replace through `app.dependency_overrides`; the report route alone is
a plain Starlette route bound to the service it was created with (it is the hot path: 1 Hz from every node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from wattwise.live_state import LIVE_STATE_PATH
from wattwise.operator.controller import Controller
from wattwise.operator.ingest import Ingest
from wattwise.operator.metrics import OperatorMetrics
from wattwise.telemetry import wire

JSON = "application/json"


@dataclasses.dataclass
class Service:
    ingest: Ingest
    controller: Controller
    metrics: OperatorMetrics
    registry: CollectorRegistry
    leading: Callable[[], bool] = lambda: True
    #: a tick older than this makes /healthz fail (the loop is stuck)
    max_tick_age_s: float = 30.0
    last_tick_at: float | None = None
    clock: Callable[[], float] = time.monotonic
    _state_cache: tuple[int, bytes] | None = None

    async def state_json(self) -> bytes | None:
        """The live state document of the last tick, built and serialised once per tick, off the event loop."""
        ticks = self.controller.ticks
        if ticks == 0:
            return None
        if self._state_cache is None or self._state_cache[0] != ticks:
            body = await asyncio.to_thread(self._render)
            if body is None:
                return None
            self._state_cache = (ticks, body)
        return self._state_cache[1]

    def _render(self) -> bytes | None:
        live = self.controller.live_state()
        return live.model_dump_json().encode() if live is not None else None


def get_service() -> Service:  # pragma: no cover - always bound by create_app
    raise RuntimeError("the operator app was created without a Service")


ServiceDep = Annotated[Service, Depends(get_service)]


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="wattwise operator", docs_url=None, redoc_url=None, openapi_url=None)
    app.dependency_overrides[get_service] = lambda: service

    async def report(request: Request) -> Response:
        """The hot path, as a plain Starlette route: no dependency solving or header models per report."""
        svc = service
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > svc.ingest.max_body_bytes:  # refuse before reading it
            svc.metrics.reports.labels("malformed").inc()
            return Response(b'{"error": "report too large"}', 413, media_type=JSON)
        answer = await svc.ingest.handle(request.headers.get("authorization"), await request.body())
        svc.metrics.reports.labels(answer.outcome).inc()
        headers = {"Retry-After": str(answer.retry_after_s)} if answer.retry_after_s is not None else None
        if answer.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return Response(answer.body, status_code=answer.status, media_type=JSON, headers=headers)

    app.router.add_route(wire.REPORT_PATH, report, methods=["POST"])

    @app.get(LIVE_STATE_PATH)
    async def state(svc: ServiceDep) -> Response:
        if not svc.leading():
            return Response(b'{"error": "standby replica: ask the active one"}', 503, media_type=JSON)
        body = await svc.state_json()
        if body is None:
            return Response(b'{"error": "no control tick yet"}', 503, media_type=JSON)
        return Response(body, media_type=JSON)

    @app.get("/metrics")
    async def metrics(svc: ServiceDep) -> Response:
        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz(svc: ServiceDep) -> Response:
        if svc.leading() and svc.last_tick_at is not None and svc.clock() - svc.last_tick_at > svc.max_tick_age_s:
            return Response(b"control loop stuck\n", 503, media_type="text/plain")
        return Response(b"ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz(svc: ServiceDep) -> Response:
        if not svc.leading():
            return Response(b"standby\n", 503, media_type="text/plain")
        if svc.controller.ticks == 0:
            return Response(b"no control tick yet\n", 503, media_type="text/plain")
        return Response(b"ok\n", media_type="text/plain")

    return app
