"""Posting a `NodeReport` to the operator and reading its `ReportReply`, with a token read fresh each time.

Projected ServiceAccount tokens rotate (the kubelet rewrites the file well before expiry), so the token is
read from its file on every request rather than once at start. Every failure (connection, timeout, HTTP
status, a reply that does not parse) is one `ReportFailed` with a message for the logs; the caller decides
about back-off and fail-safe.

The client is the standard library's `http.client` with one kept-alive connection, not httpx: it runs once a
second on every GPU node, and httpx with its transport stack and default CA bundle costs the DaemonSet about
7 MiB of RSS (measured by `make bench`) for features a single POST to one known server does not use. For the
same reason reports are encoded and replies decoded by `wattwise.telemetry.messages`, not the pydantic models
(~18 MiB). TLS is verified against `ca_file` (the operator's CA, mounted from a Secret/ConfigMap) or the system
store.
"""

from __future__ import annotations

import http.client
import logging
import pathlib
import ssl
import urllib.parse

from wattwise.telemetry import messages, vocabulary

_MAX_REPLY_BYTES = 4 * 1024 * 1024
#: What a kept-alive connection closed by the server while idle looks like on the next request.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

log = logging.getLogger(__name__)


class ReportFailed(RuntimeError):
    """The report did not get a usable reply."""


class Reporter:
    def __init__(
        self,
        operator_url: str,
        token_file: pathlib.Path | None,
        *,
        timeout_s: float = 0.8,
        ca_file: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(operator_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"operator URL must be http(s)://host[:port][/prefix], got {operator_url!r}")
        self.url = operator_url.rstrip("/") + vocabulary.REPORT_PATH
        self._path = parsed.path.rstrip("/") + vocabulary.REPORT_PATH
        self._host, self._port = parsed.hostname, parsed.port
        self._tls = ssl.create_default_context(cafile=ca_file) if parsed.scheme == "https" else None
        self.token_file = token_file
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout_s, context=self._tls
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def _headers(self, length: int) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Content-Length": str(length),
            "User-Agent": "wattwise-agent",
        }
        if self.token_file is not None:
            try:
                headers.update(vocabulary.bearer(self.token_file.read_text()))
            except OSError as exc:
                raise ReportFailed(f"cannot read the ServiceAccount token {self.token_file}: {exc}") from exc
        return headers

    def send(self, report: messages.NodeReport) -> messages.ReportReply:
        body = messages.encode(report)
        headers = self._headers(len(body))
        reused = self._conn is not None
        try:
            response, content = self._post(body, headers)
        except (OSError, http.client.HTTPException) as exc:
            if not (reused and isinstance(exc, _STALE_CONNECTION)):
                raise ReportFailed(f"POST {self.url}: {type(exc).__name__}: {exc}") from exc
            # the server closed the kept-alive connection while idle: that says nothing about the operator's
            # health, so try once more on a fresh connection before counting a failure
            log.debug("kept-alive connection to %s was closed (%s); reconnecting", self.url, exc)
            try:
                response, content = self._post(body, headers)
            except (OSError, http.client.HTTPException) as retry_exc:
                raise ReportFailed(f"POST {self.url}: {type(retry_exc).__name__}: {retry_exc}") from retry_exc
        if response.status != 200:
            raise ReportFailed(f"POST {self.url}: HTTP {response.status}: {content[:200].decode(errors='replace')}")
        try:
            return messages.decode_reply(content)
        except messages.WireError as exc:
            raise ReportFailed(f"POST {self.url}: reply does not match {vocabulary.API_VERSION}: {exc}") from exc

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read(_MAX_REPLY_BYTES)
        except (OSError, http.client.HTTPException):
            self.close()  # never reuse a connection in an unknown state
            raise
        if response.will_close:
            self.close()
        return response, content

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
