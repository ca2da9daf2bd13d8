"""Who sent a report: the agent's projected ServiceAccount token, checked with a TokenReview, bound to its node.

- Authentication (401 when it fails): the token must pass a TokenReview for the operator's audience. Answers are
  cached by the token's SHA-256 (never the token itself) for `ttl_s`, failures for `negative_ttl_s`, so 1 Hz
  reports from every node cost one TokenReview per token per minute and a flood of forged tokens cannot turn
  into a flood of TokenReviews. Concurrent requests with one token share one review.
- Authorisation (403 with the reason): the user must be the agent's ServiceAccount, and the token must be bound
  to a pod on the node the report claims. kube-apiserver puts the pod and, since Kubernetes 1.30
  (ServiceAccountTokenPodNodeInfo), its node into the review's `user.extra`; when the node is missing (an older
  cluster) the operator looks the pod up (`pod_node`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """A TokenReview's answer, reduced to what the operator checks."""

    authenticated: bool
    username: str = ""
    extra: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def _one(self, key: str) -> str | None:
        values = self.extra.get(key) or ()
        return values[0] if values else None

    @property
    def pod_name(self) -> str | None:
        return self._one(POD_NAME_KEY)

    @property
    def node_name(self) -> str | None:
        return self._one(NODE_NAME_KEY)

    @property
    def namespace(self) -> str | None:
        """The ServiceAccount's namespace (`system:serviceaccount:<ns>:<name>`), which is also its pod's."""
        if not self.username.startswith(SERVICE_ACCOUNT_PREFIX):
            return None
        parts = self.username[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
        return parts[0] if len(parts) == 2 else None


ReviewFn = Callable[[str], Awaitable[Identity]]
PodNodeFn = Callable[[str, str], Awaitable[str | None]]


class AuthError(Exception):
    """Refused: `status` is 401 or 403, `reason` says why (for the agent's log and the operator's)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def service_account_user(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


class TokenReviewCache:
    """Identities by token hash with expiry and a bounded size (oldest evicted first)."""

    def __init__(
        self,
        review: ReviewFn,
        *,
        ttl_s: float = 60.0,
        negative_ttl_s: float = 10.0,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self.ttl_s, self.negative_ttl_s, self.max_entries = ttl_s, negative_ttl_s, max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[Identity, float]] = collections.OrderedDict()
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.reviews = 0
        self.hits = 0

    async def identity(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            self.hits += 1
            return entry[0]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Identity] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.reviews += 1
            ident = await self._review(token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaits does not warn
            raise
        else:
            future.set_result(ident)
            ttl = self.ttl_s if ident.authenticated else self.negative_ttl_s
            self._entries[key] = (ident, self._clock() + ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return ident
        finally:
            del self._inflight[key]


class AgentAuthenticator:
    """Turns a bearer token and the node a report claims into the agent pod's name, or an AuthError."""

    def __init__(self, cache: TokenReviewCache, agent_users: Sequence[str], pod_node: PodNodeFn | None = None) -> None:
        self.cache = cache
        self.agent_users = frozenset(agent_users)
        self._pod_node = pod_node

    async def authenticate(self, authorization: str | None) -> Identity:
        """401 unless the header carries a token the API server accepts."""
        if not authorization:
            raise AuthError(401, "missing Authorization header (Bearer <projected ServiceAccount token>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "Authorization header is not 'Bearer <token>'")
        ident = await self.cache.identity(token)
        if not ident.authenticated:
            raise AuthError(401, f"token rejected by TokenReview: {ident.error or 'not authenticated'}")
        return ident

    async def authorize(self, ident: Identity, node: str) -> str:
        """403 unless the token is the agent's and is bound to a pod on `node`; returns `namespace/pod`."""
        if ident.username not in self.agent_users:
            raise AuthError(403, f"user {ident.username!r} is not the node agent's ServiceAccount")
        pod = ident.pod_name
        namespace = ident.namespace
        if pod is None or namespace is None:
            raise AuthError(403, "token is not bound to a pod: mount a projected ServiceAccount token in the agent")
        bound_node = ident.node_name
        if bound_node is None and self._pod_node is not None:
            bound_node = await self._pod_node(namespace, pod)
        if bound_node is None:
            raise AuthError(403, f"cannot tell which node agent pod {namespace}/{pod} runs on")
        if bound_node != node:
            raise AuthError(403, f"agent pod {namespace}/{pod} runs on node {bound_node!r}, not {node!r}")
        return f"{namespace}/{pod}"
