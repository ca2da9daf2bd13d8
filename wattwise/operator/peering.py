"""Which replica is active: kopf peering, read back so the HTTP side knows what kopf decided.

kopf pauses a replica's watches and daemons while a live peer in the same peering object has a higher or equal
priority. The ingest endpoint must follow the same rule: a standby that answered agents would tell them "no
limits" (it controls no budget) and lift every limit the active replica set. So `PeeringObserver` reads the
`ClusterKopfPeering` object every few seconds and applies kopf's rule (`leads`).

Priorities: the oldest replica wins (`priority_for_start`), so a restarted or newly scheduled replica never
pre-empts a running one; it takes over only when the active one's keep-alive expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_PLURAL = "clusterkopfpeerings"
#: kopf assumes this lifetime for a peer that does not state one
DEFAULT_LIFETIME_S = 60


def priority_for_start(started_unix_s: float, rng: random.Random | None = None) -> int:
    """Earlier start, higher priority; two digits of randomness break a tie within one second."""
    jitter = (rng or random.Random()).randrange(100)
    return (4_000_000_000 - int(started_unix_s)) * 100 + jitter


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def leads(status: Mapping[str, Any] | None, identity: str, priority: int, now: dt.datetime) -> bool:
    """kopf's rule: active unless another live peer has a priority >= ours."""
    for peer_id, info in (status or {}).items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        seen = _parse_time(info.get("lastseen"))
        lifetime = info.get("lifetime", DEFAULT_LIFETIME_S)
        if seen is None or not isinstance(lifetime, int | float):
            continue
        if seen + dt.timedelta(seconds=float(lifetime)) <= now:
            continue  # dead peer
        if int(info.get("priority", 0)) >= priority:
            return False
    return True


class PeeringObserver:
    def __init__(self, api: client.ApiClient, name: str, identity: str, priority: int, interval_s: float = 2.0) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.name, self.identity, self.priority, self.interval_s = name, identity, priority, interval_s
        #: False until the first read: a replica must not answer agents before it knows it is the active one
        self.active = False

    def leading(self) -> bool:
        return self.active

    def _read(self) -> Mapping[str, Any] | None:
        obj: Any = self.custom.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, self.name)
        status = obj.get("status")
        return status if isinstance(status, Mapping) else None

    async def run(self) -> None:
        while True:
            try:
                status = await asyncio.to_thread(self._read)
                # Until kopf has announced this replica in the object, it is not active.
                announced = status is not None and self.identity in status
                active = announced and leads(status, self.identity, self.priority, dt.datetime.now(dt.UTC))
            except ApiException as exc:
                log.warning("cannot read ClusterKopfPeering %s: %s %s", self.name, exc.status, exc.reason)
                active = False
            if active != self.active:
                log.info("this replica is now %s", "active" if active else "on standby")
                self.active = active
            await asyncio.sleep(self.interval_s)
