"""The operator's Kubernetes calls outside kopf: TokenReviews, status patches, Events, pod lookups.

The official (synchronous) client, each call run in a worker thread so the event loop that serves agent reports
never waits on the API server. Everything here is low-rate: TokenReviews are cached (`auth`), statuses are
written every few seconds at most, Events only on transitions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from typing import Any

from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from wattwise.crd.common import GROUP, VERSION
from wattwise.operator.auth import Identity
from wattwise.operator.budget_status import EventSpec
from wattwise.operator.conditions import timestamp

log = logging.getLogger(__name__)

COMPONENT = "wattwise-operator"
#: Events about cluster-scoped objects live here, as kubectl and kopf expect.
CLUSTER_EVENT_NAMESPACE = "default"
PLURALS = {"PowerBudget": "powerbudgets", "WorkloadClass": "workloadclasses"}


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return ApiClient()
        except config.ConfigException:
            pass
    made: ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return made


class Kube:
    def __init__(self, api: ApiClient, *, audiences: tuple[str, ...], instance: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.authn = client.AuthenticationV1Api(api)
        self.audiences = audiences
        self.instance = instance

    # --- TokenReview -------------------------------------------------------------------------------------------

    def _review(self, token: str) -> Identity:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=list(self.audiences)))
        status = self.authn.create_token_review(body).status
        if status is None or not status.authenticated or status.user is None:
            return Identity(False, error=(status.error if status is not None else None) or "not authenticated")
        if self.audiences and not set(status.audiences or ()) & set(self.audiences):
            return Identity(False, error=f"token is not for audience {', '.join(self.audiences)}")
        extra = {k: list(v or ()) for k, v in (status.user.extra or {}).items()}
        return Identity(True, username=status.user.username or "", extra=extra)

    async def review_token(self, token: str) -> Identity:
        return await asyncio.to_thread(self._review, token)

    async def pod_node(self, namespace: str, name: str) -> str | None:
        try:
            pod = await asyncio.to_thread(self.core.read_namespaced_pod, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return pod.spec.node_name if pod.spec is not None else None

    # --- status ------------------------------------------------------------------------------------------------

    def _patch_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURALS[kind], name, {"status": status})

    async def patch_status(self, kind: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch `.status`; False (logged) when the object is gone or the write failed."""
        try:
            await asyncio.to_thread(self._patch_status, kind, name, status)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s %s not written: %s %s", kind, name, exc.status, exc.reason)
            return False
        return True

    # --- Events ------------------------------------------------------------------------------------------------

    def _event(self, involved: dict[str, Any], namespace: str, event: EventSpec) -> None:
        now = dt.datetime.now(dt.UTC)
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": involved,
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": timestamp(now),
            "lastTimestamp": timestamp(now),
            "count": 1,
        }
        self.core.create_namespaced_event(namespace, body)

    async def event(
        self, kind: str, name: str, uid: str, event: EventSpec, *, namespace: str | None = None, api_version: str = ""
    ) -> None:
        """Post an Event about an object (cluster-scoped ones in `default`); failures are logged, never raised."""
        involved = {"apiVersion": api_version or f"{GROUP}/{VERSION}", "kind": kind, "name": name, "uid": uid}
        if namespace is not None:
            involved["namespace"] = namespace
        try:
            await asyncio.to_thread(self._event, involved, namespace or CLUSTER_EVENT_NAMESPACE, event)
        except ApiException as exc:
            log.warning("event %s on %s %s not posted: %s %s", event.reason, kind, name, exc.status, exc.reason)
