"""The extender's view of the operator: the latest snapshot, kept fresh by a background task.

Requests never touch the network: they read `StateCache.snapshot`, which the refresher swaps (one reference
assignment) about once a second. A failed fetch keeps the previous snapshot; its age grows until placement
stops trusting it (`stale_after_s`). Each refresh also releases reservations the telemetry now covers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import httpx
import pydantic

from wattwise.live_state import LIVE_STATE_PATH, LiveState
from wattwise.scheduler_extender.metrics import ExtenderMetrics
from wattwise.scheduler_extender.reservations import ReservationBook
from wattwise.scheduler_extender.snapshot import Snapshot

log = logging.getLogger(__name__)


class StateCache:
    def __init__(self, book: ReservationBook, clock: Callable[[], float] = time.monotonic) -> None:
        self.book = book
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.last_error: str = ""

    def update(self, state: LiveState) -> Snapshot:
        return self.install(Snapshot.from_state(state, self.clock()))

    def install(self, snap: Snapshot) -> Snapshot:
        """Make `snap` the one requests read, and release the reservations its telemetry now covers."""
        self.snapshot = snap
        self.last_error = ""
        self.book.release(set(snap.pods), self.clock())
        return snap

    def age_s(self) -> float:
        snap = self.snapshot
        return math.inf if snap is None else snap.age_s(self.clock())


async def fetch_once(cache: StateCache, client: httpx.AsyncClient, base_url: str, metrics: ExtenderMetrics) -> bool:
    """One fetch; True when a valid document replaced the snapshot. Never raises for remote faults."""
    url = base_url.rstrip("/") + LIVE_STATE_PATH
    try:
        response = await client.get(url)
        response.raise_for_status()
        fetched_at = cache.clock()
        # Parsing 5,000 nodes takes a quarter of a second: off the event loop, so requests keep flowing.
        snap = await asyncio.to_thread(parse_snapshot, response.content, fetched_at)
    except httpx.HTTPError as exc:
        metrics.refreshes.labels("error").inc()
        _note(cache, f"cannot fetch {url}: {type(exc).__name__}: {exc}")
        return False
    except pydantic.ValidationError as exc:
        metrics.refreshes.labels("invalid").inc()
        _note(
            cache,
            f"{url} returned an invalid live state: {exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
        )
        return False
    cache.install(snap)
    metrics.refreshes.labels("ok").inc()
    return True


def parse_snapshot(raw: bytes, fetched_at: float) -> Snapshot:
    """Validate a live-state document and index it (CPU-bound: run it in a thread)."""
    return Snapshot.from_state(LiveState.model_validate_json(raw), fetched_at)


def _note(cache: StateCache, message: str) -> None:
    if message != cache.last_error:  # log changes, not every second of the same outage
        age = cache.age_s()
        kept = "no live state yet" if math.isinf(age) else f"keeping the previous live state, {age:.1f}s old"
        log.warning("%s (%s)", message, kept)
    cache.last_error = message


async def refresh_forever(
    cache: StateCache,
    client: httpx.AsyncClient,
    base_url: str,
    interval_s: float,
    metrics: ExtenderMetrics,
) -> None:
    """Fetch every `interval_s` until cancelled; expire reservations even while the operator is away.

    Nothing but cancellation ends the loop: an unexpected fault is logged and the next tick tries again, since
    a dead refresher would silently turn every decision into pass-through.
    """
    while True:
        started = cache.clock()
        try:
            await fetch_once(cache, client, base_url, metrics)
        except Exception:
            metrics.refreshes.labels("error").inc()
            log.exception("live-state refresh failed unexpectedly; retrying next tick")
        cache.book.release(set(), cache.clock())
        metrics.reservations.set(len(cache.book))
        await asyncio.sleep(max(0.0, interval_s - (cache.clock() - started)))
