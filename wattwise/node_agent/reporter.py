"""Posting a `NodeReport` to the operator and reading its `ReportReply`, with a token read fresh each time.

Projected ServiceAccount tokens rotate (the kubelet rewrites the file well before expiry), so the token is
read from its file on every request rather than once at start. Every failure (connection, timeout, HTTP
status, a reply that does not parse) is one `ReportFailed` with a message for the logs; the caller decides
about back-off and fail-safe.
"""

from __future__ import annotations

import pathlib

import httpx
import pydantic

from wattwise.telemetry import wire


class ReportFailed(RuntimeError):
    """The report did not get a usable reply."""


class Reporter:
    def __init__(
        self,
        operator_url: str,
        token_file: pathlib.Path | None,
        *,
        timeout_s: float = 0.8,
        verify: str | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = operator_url.rstrip("/") + wire.REPORT_PATH
        self.token_file = token_file
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            verify=verify,
            transport=transport,
            headers={"User-Agent": "wattwise-agent"},
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token_file is not None:
            try:
                headers.update(wire.bearer(self.token_file.read_text()))
            except OSError as exc:
                raise ReportFailed(f"cannot read the ServiceAccount token {self.token_file}: {exc}") from exc
        return headers

    def send(self, report: wire.NodeReport) -> wire.ReportReply:
        try:
            response = self._client.post(self.url, content=report.to_json(), headers=self._headers())
        except httpx.HTTPError as exc:
            raise ReportFailed(f"POST {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ReportFailed(f"POST {self.url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return wire.ReportReply.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise ReportFailed(f"POST {self.url}: reply does not match {wire.API_VERSION}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
