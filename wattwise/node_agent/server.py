"""`/metrics`, `/healthz` and `/readyz` on one small threaded stdlib HTTP server.

The stdlib server (not FastAPI/uvicorn) keeps the DaemonSet's footprint small: it runs on every GPU node.
- `/healthz` (liveness): the loop ticked within `stale_after_s`, and so did the envelope loop once it started;
  a hung NVML call or a dead loop fails it, and the kubelet restarts the agent.
- `/readyz` (readiness): at least one sample has been taken. It does not depend on the operator: an
  operator outage must not mark every agent unready (the fail-safe handles that case).
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from wattwise.node_agent.agent import Snapshot
from wattwise.node_agent.envelope import EnvelopeStatus

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        snapshot: Callable[[], Snapshot],
        stale_after_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        envelope: Callable[[], EnvelopeStatus] | None = None,
    ) -> None:
        self._registry = registry
        self._snapshot = snapshot
        self._envelope = envelope
        self._stale_after_s = stale_after_s
        self._monotonic = monotonic  # the agent's clock
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = server.respond(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # stdlib signature
                log.debug("%s " + format, self.address_string(), *args)

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        snap = self._snapshot()
        if path == "/healthz":
            last = snap.last_tick_monotonic_s
            age = self._monotonic() - last if last is not None else 0.0
            if age > self._stale_after_s:
                return 503, "text/plain", f"no sample for {age:.0f} s\n".encode()
            fast = self._envelope().last_tick_monotonic_s if self._envelope is not None else None
            fast_age = self._monotonic() - fast if fast is not None else 0.0
            if fast_age > self._stale_after_s:
                return 503, "text/plain", f"no envelope tick for {fast_age:.0f} s\n".encode()
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            if snap.ticks > 0:
                return 200, "text/plain", f"ok: {len(snap.readings)} GPU(s), operator {snap.mode.value}\n".encode()
            return 503, "text/plain", b"no sample yet\n"
        return 404, "text/plain", b"not found\n"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="wattwise-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
