"""The gateway's HTTP server settings against hostile clients: a cap on the request head
(request line and headers) and deadlines for a request's head and body to arrive.

uvicorn has neither for its httptools parser (it buffers a head of any size and waits for it
forever), so a slowloris client could hold connections open indefinitely and a huge header
could take memory. The protocol below adds both; asyncio already keeps one slow connection
from delaying any other. With ``http_parser = h11``, h11's own incomplete-event cap bounds
the head and the deadlines are not applied.
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import uvicorn

from core.config import Settings
from schemas.api import Problem
from schemas.errors import ErrorCode

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _problem(status: int, reason: str, code: ErrorCode, detail: str) -> bytes:
    """A complete HTTP/1.1 answer with the one error envelope, closing the connection."""
    rid = uuid.uuid4().hex
    body = msgspec.json.encode(Problem(
        type=f"https://inferq.dev/errors/{code}", title=reason, status=status, detail=detail,
        code=str(code), retryable=False, request_id=rid))
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nx-request-id: {rid}\r\nconnection: close\r\n"
            f"\r\n").encode() + body


if HttpToolsProtocol is not None:
    class GuardedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol with a head size cap (431) and deadlines: the head
        within ``head_timeout_s`` of its first byte (or of the connection), the body within
        ``body_timeout_s`` of the head (408 if nothing was answered yet, then close)."""

        max_head_bytes = 16 * 1024
        head_timeout_s = 10.0
        body_timeout_s = 60.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._head_bytes = 0
            self._too_large = False
            self._timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._arm(self.head_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._arm(self.head_timeout_s)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._arm(self.body_timeout_s)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            self.transport.write(_problem(
                431, "Request Header Fields Too Large", ErrorCode.PAYLOAD_TOO_LARGE,
                f"the request line and headers are over {self.max_head_bytes} bytes"))
            self.transport.close()

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > self.max_head_bytes:
                self._too_large = True
                # The parser turns this into its error; send_400_response answers 431.
                raise ValueError("request head too large")

        def _arm(self, delay: float) -> None:
            self._disarm()
            self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_problem(
                    408, "Request Timeout", ErrorCode.INVALID_REQUEST,
                    "the request did not arrive in time"))
            self.transport.close()


def server_config(app, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration of the gateway, hostile-client limits included."""
    http: object = settings.http_parser if settings.http_parser != "auto" else "auto"
    if settings.http_parser in ("auto", "httptools") and HttpToolsProtocol is not None:
        http = type("GatewayHttpTools", (GuardedHttpTools,), {
            "max_head_bytes": settings.http_max_head_bytes,
            "head_timeout_s": settings.http_head_timeout_s,
            "body_timeout_s": settings.http_body_timeout_s})
    return uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level="warning",
        lifespan="on", access_log=False, http=http,  # type: ignore[arg-type]
        timeout_keep_alive=5, h11_max_incomplete_event_size=settings.http_max_head_bytes)
