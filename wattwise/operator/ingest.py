"""The hot path: one agent report in, that node's reply out. Framework-free so it is tested and timed alone.

Order of checks, cheapest refusal first, and nothing is stored unless every check passes:
1. 503 on a standby replica (peering): it must not answer, or agents would drop limits the leader set.
2. 401 without a token the API server accepts (`auth`).
3. 413 for a body over the size limit; 400 for an `apiVersion` this operator does not speak; 422 for any
   other body that does not parse as a `NodeReport`.
4. 403 when the token is not the agent's, or is bound to a pod on another node than the report's.
5. 404 for a node the cluster does not have; 409 for a report older than one already taken from that agent.
6. 503 (retry in a second) until a control tick has produced a reply for the node: answering "no limits" to a
   node whose GPUs the operator limited before a restart would lift them all at once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import pydantic

from wattwise.operator.auth import AgentAuthenticator, AuthError
from wattwise.operator.controller import Controller
from wattwise.operator.records import ClusterState, ReportRecord
from wattwise.telemetry import wire

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    outcome: str
    retry_after_s: int | None = None


def _error(status: int, outcome: str, message: str, retry_after_s: int | None = None) -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), outcome, retry_after_s)


def _describe(exc: pydantic.ValidationError, limit: int = 5) -> str:
    problems = []
    for err in exc.errors(include_url=False)[:limit]:
        path = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(f"{path}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


class Ingest:
    def __init__(
        self,
        state: ClusterState,
        controller: Controller,
        authenticator: AgentAuthenticator,
        *,
        leading: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.state = state
        self.controller = controller
        self.auth = authenticator
        self.leading = leading
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    async def handle(self, authorization: str | None, body: bytes) -> Answer:
        if not self.leading():
            return _error(503, "standby", "this operator replica is on standby; another one is active", 5)
        try:
            ident = await self.auth.authenticate(authorization)
        except AuthError as exc:
            return _error(exc.status, "unauthenticated", exc.reason)
        if len(body) > self.max_body_bytes:
            return _error(413, "malformed", f"report larger than {self.max_body_bytes} bytes")
        try:
            report = wire.NodeReport.model_validate_json(body)
        except pydantic.ValidationError as exc:
            if any(e["loc"] == ("apiVersion",) and e["type"] == "literal_error" for e in exc.errors()):
                return _error(
                    400, "unsupported_version", f"unsupported apiVersion: this operator speaks {wire.API_VERSION}"
                )
            return _error(422, "malformed", f"not a {wire.API_VERSION} NodeReport: {_describe(exc)}")
        try:
            agent_pod = await self.auth.authorize(ident, report.node)
        except AuthError as exc:
            return _error(exc.status, "forbidden", exc.reason)
        if report.node not in self.state.nodes:
            return _error(404, "unknown_node", f"node {report.node!r} is not a node of this cluster")
        previous = self.state.reports.get(report.node)
        if (
            previous is not None
            and previous.report.agent.started_at == report.agent.started_at
            and report.sequence <= previous.report.sequence
        ):
            return _error(
                409,
                "out_of_order",
                f"report {report.sequence} is not newer than report {previous.report.sequence} already taken",
            )
        self.state.reports[report.node] = ReportRecord(report, self.clock(), agent_pod)
        reply = self.controller.replies.get(report.node)
        if reply is None:
            return _error(503, "not_ready", f"no control decision for node {report.node!r} yet; retry", 1)
        return Answer(200, reply, "ok")
