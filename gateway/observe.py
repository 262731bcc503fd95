"""What every HTTP request gets, whichever path answers it: a request id (the caller's
``X-Request-Id`` or a new one) and a span of the caller's W3C trace (or a new trace), both sent
back as response headers and bound into every log line the request causes; and its latency,
observed by route template and status.

Two paths use it: the middleware below (every route Litestar routes) and the status-poll fast
path (gateway/polls.py), which answers before Litestar's router.
"""

from __future__ import annotations

import time

from litestar.types import ASGIApp, Receive, Scope, Send

from core import metrics, tracing
from core.tracing import HEADER as TRACEPARENT
from core.tracing import TraceParent, bound, continue_or_start, new_request_id

_TRACEPARENT = TRACEPARENT.encode()


class Observed:
    """One request's ids and start time; ``headers`` adds its ids to a response's headers."""

    __slots__ = ("incoming", "request_id", "t0", "trace", "traceparent")

    def __init__(self, scope: Scope):
        self.t0 = time.perf_counter()
        rid = incoming = None
        for k, v in scope.get("headers", ()):  # ASGI: lower-case names
            if k == b"x-request-id":
                rid = v.decode("latin-1")[:128]
            elif k == b"traceparent":
                incoming = v.decode("latin-1")
        self.request_id: str = rid or new_request_id()
        self.incoming: str | None = incoming
        self.trace: TraceParent = continue_or_start(incoming)
        self.traceparent: str = self.trace.header()
        state = scope.setdefault("state", {})
        state["request_id"], state["traceparent"] = self.request_id, self.traceparent

    def headers(self, out: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """``out`` with X-Request-Id (unless the response set one) and traceparent added."""
        if not any(k.lower() == b"x-request-id" for k, _ in out):
            out.append((b"x-request-id", self.request_id.encode("latin-1")))
        out.append((_TRACEPARENT, self.traceparent.encode()))
        return out

    def bound(self):
        """The request's ids in the log context for the duration of a block."""
        return bound(request_id=self.request_id, trace_id=self.trace.trace_id)

    def done(self, method: str, route: str, status: int) -> None:
        """Observe the request's latency by method, route template and status (and record
        its span when spans are exported)."""
        elapsed = time.perf_counter() - self.t0
        metrics.HTTP_LATENCY.labels(method, route, str(status)).observe(elapsed)
        if tracing.exporting():
            end = time.time_ns()
            tracing.record_span(
                "gateway", f"{method} {route}", self.trace, self.incoming,
                end - int(elapsed * 1e9), end, kind="server", attributes={
                    "http.request.method": method, "http.route": route,
                    "http.response.status_code": status, "inferq.request_id": self.request_id},
                error=f"HTTP {status}" if status >= 500 else None)


def observe_middleware(app: ASGIApp) -> ASGIApp:
    """The Litestar middleware: each request observed as above. One wrapper of ``send``: each
    layer of wrapping costs every request a call per message."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        seen = Observed(scope)
        status = 500

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": seen.headers(list(message.get("headers", [])))}
            await send(message)

        try:
            with seen.bound():
                await app(scope, receive, send_wrapper)
        finally:
            handler = scope.get("route_handler")
            route = next(iter(handler.paths)) if handler is not None else "unmatched"
            seen.done(scope["method"], route, status)

    return middleware
