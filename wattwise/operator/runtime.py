"""The operator process: kopf, the 1 Hz control loop and the HTTP server (uvicorn) on one asyncio loop.

One loop, so the handlers, the ingest endpoint and the control loop share `ClusterState` without locks. kopf
owns the OS signals (SIGTERM stops it gracefully); when kopf returns, the server and the loop stop too.
`Operator.run(stop_flag)` is also how the tests run a whole operator in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import socket
import time
from collections.abc import Generator
from typing import Any

import kopf
import uvicorn
from prometheus_client import CollectorRegistry

from wattwise.crd.common import LatencyTier
from wattwise.operator import handlers
from wattwise.operator.app import Service, create_app
from wattwise.operator.auth import AgentAuthenticator, Identity, TokenReviewCache, service_account_user
from wattwise.operator.budget_status import StatusCadence
from wattwise.operator.control_loop import ControlLoop, Writer
from wattwise.operator.controller import Controller, ControllerSettings
from wattwise.operator.ingest import Ingest
from wattwise.operator.kube import Kube, api_client
from wattwise.operator.metrics import OperatorMetrics
from wattwise.operator.peering import PeeringObserver, priority_for_start
from wattwise.operator.policy_inputs import InputSettings
from wattwise.operator.records import ClusterState
from wattwise.telemetry import wire

log = logging.getLogger("wattwise.operator")

#: kopf keeps its handler progress and diff base in annotations with this prefix (never in `.status`, which
#: the CRD's structural schema would prune).
KOPF_ANNOTATION_PREFIX = "operator.wattwise.dev"


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str | None = None
    host: str = "0.0.0.0"
    port: int = 8443
    tls_cert: str | None = None
    tls_key: str | None = None
    agent_service_accounts: tuple[str, ...] = ("wattwise-system/wattwise-agent",)
    audience: str = wire.TOKEN_AUDIENCE
    tick_interval_s: float = 1.0
    stale_after_s: float = 3.0
    status_interval_s: float = 5.0
    above_cap_window_s: float = 300.0
    default_tier: LatencyTier = LatencyTier.STANDARD
    unknown_gpu_w: float = 700.0
    token_cache_ttl_s: float = 60.0
    #: None: run standalone (one replica); else the ClusterKopfPeering object's name
    peering: str | None = "wattwise"
    peering_lifetime_s: int = 20
    #: None: the oldest replica wins (`peering.priority_for_start`)
    peering_priority: int | None = None
    identity: str = dataclasses.field(default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname())

    def controller_settings(self) -> ControllerSettings:
        return ControllerSettings(
            inputs=InputSettings(self.stale_after_s, self.default_tier, self.unknown_gpu_w),
            cadence=StatusCadence(interval_s=self.status_interval_s, window_s=self.above_cap_window_s),
            report_interval_s=self.tick_interval_s,
        )


#: Cyclic-GC thresholds for the operator process. A tick allocates some 100,000 short-lived objects per 10,000
#: GPUs; with the default (700, 10, 10) the collector runs hundreds of times per tick and its full collections
#: walk every report held in memory. Measured on the 10,000-GPU benchmark: median tick 232 ms -> 156 ms.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: kopf owns SIGTERM/SIGINT and stops everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Operator:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.api = api_client(config.kubeconfig)
        self.state = ClusterState()
        self.controller = Controller(self.state, config.controller_settings())
        self.kube = Kube(self.api, audiences=(config.audience,), instance=config.identity)
        self.registry = CollectorRegistry()
        self.metrics = OperatorMetrics(self.registry, self.controller, self.leading)
        self.priority = config.peering_priority or priority_for_start(time.time())
        self.peering: PeeringObserver | None = None
        if config.peering is not None:
            self.peering = PeeringObserver(self.api, config.peering, config.identity, self.priority)
        self.cache = TokenReviewCache(self._review, ttl_s=config.token_cache_ttl_s)
        agents = [service_account_user(*sa.split("/", 1)) for sa in config.agent_service_accounts]
        self.authenticator = AgentAuthenticator(self.cache, agents, self.kube.pod_node)
        self.ingest = Ingest(self.state, self.controller, self.authenticator, leading=self.leading)
        self.service = Service(self.ingest, self.controller, self.metrics, self.registry, leading=self.leading)
        self.writer = Writer(self.kube, self.controller, self.metrics)
        self.loop = ControlLoop(
            self.controller,
            self.writer,
            interval_s=config.tick_interval_s,
            metrics=self.metrics,
            leading=self.leading,
            on_tick=self._ticked,
        )
        self.app = create_app(self.service)
        self.kopf_registry = kopf.OperatorRegistry()
        handlers.register(
            self.kopf_registry,
            handlers.HandlerContext(self.state, self.kube, config.default_tier),
            self.api.configuration,
        )
        self.server: _Server | None = None

    def leading(self) -> bool:
        return self.peering is None or self.peering.leading()

    def _ticked(self, at: float) -> None:
        self.service.last_tick_at = at

    async def _review(self, token: str) -> Identity:
        self.metrics.token_reviews.inc()
        return await self.kube.review_token(token)

    def kopf_settings(self) -> kopf.OperatorSettings:
        settings = kopf.OperatorSettings()
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{KOPF_ANNOTATION_PREFIX}/finalizer"
        # Our own Events say what matters; kopf's would repeat every handler's log line on the object.
        settings.posting.level = logging.ERROR
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        if self.config.peering is None:
            settings.peering.standalone = True
        else:
            settings.peering.name = self.config.peering
            settings.peering.mandatory = True
            settings.peering.priority = self.priority
            settings.peering.lifetime = self.config.peering_lifetime_s
            settings.peering.stealth = True
        return settings

    def server_config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            host=self.config.host,
            port=self.config.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=self.config.tls_cert,
            ssl_keyfile=self.config.tls_key,
        )

    async def run(self, stop_flag: asyncio.Event | None = None, sock: socket.socket | None = None) -> None:
        """Run until kopf stops (SIGTERM, or `stop_flag` set); everything else stops with it."""
        self.server = _Server(self.server_config())
        background: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.server.serve(sockets=[sock] if sock is not None else None), name="http"),
            asyncio.create_task(self.loop.run(), name="control loop"),
            asyncio.create_task(self.writer.run(), name="status writer"),
        ]
        if self.peering is not None:
            background.append(asyncio.create_task(self.peering.run(), name="peering observer"))
        log.info(
            "operator %s: serving on %s:%d, peering %s",
            self.config.identity,
            self.config.host,
            self.config.port,
            self.config.peering or "off (standalone)",
        )
        try:
            await kopf.operator(
                registry=self.kopf_registry,
                settings=self.kopf_settings(),
                clusterwide=True,
                identity=self.config.identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
                stop_flag=stop_flag,
            )
        finally:
            self.server.should_exit = True
            for task in background[1:]:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            # Flush what the last ticks decided to say (statuses, Events) before going.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.flush(), timeout=5)
            self.api.close()  # type: ignore[no-untyped-call]
