"""The Litestar application: routes, the error envelope, metrics, and the lifespan that owns
the connections and the background sweeper (opened and started on start-up; stopped, then
closed, on shutdown)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from core import metrics
from core.config import Settings
from core.tracing import HEADER as TRACEPARENT
from core.tracing import bound, continue_or_start, new_request_id
from gateway import errors as E
from gateway.extra_routes import EXTRA_ROUTES
from gateway.fileroutes import FILE_ROUTES
from gateway.openai.routes import OPENAI_ROUTER
from gateway.openapi import FinishedJsonPlugin
from gateway.operator import OPERATOR_ROUTES
from gateway.routes import ROUTES
from gateway.services import GatewayServices
from gateway.ui import UI_ROUTES


def observe_middleware(app: ASGIApp) -> ASGIApp:
    """Every request gets a request id (the caller's ``X-Request-Id`` or a new one) and a span
    of the caller's W3C trace (or a new trace); both go back as response headers, into every
    log line the request causes, and (the trace) onto the job's messages. Its latency is
    observed by route template and status. One wrapper of ``send`` for both: each layer of
    wrapping costs every request a call per message."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = incoming = None
        for k, v in scope.get("headers", ()):  # ASGI: lower-case names
            if k == b"x-request-id":
                rid = v.decode("latin-1")[:128]
            elif k == b"traceparent":
                incoming = v.decode("latin-1")
        rid = rid or new_request_id()
        trace = continue_or_start(incoming)
        traceparent = trace.header()
        state = scope.setdefault("state", {})
        state["request_id"], state["traceparent"] = rid, traceparent
        status = 500

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in out):
                    out.append((b"x-request-id", rid.encode("latin-1")))
                out.append((_TRACEPARENT, traceparent.encode()))
                message = {**message, "headers": out}
            await send(message)

        try:
            with bound(request_id=rid, trace_id=trace.trace_id):
                await app(scope, receive, send_wrapper)
        finally:
            handler = scope.get("route_handler")
            route = next(iter(handler.paths)) if handler is not None else "unmatched"
            metrics.HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - t0)

    return middleware


_TRACEPARENT = TRACEPARENT.encode()


def create_app(settings: Settings, svc: GatewayServices | None = None) -> Litestar:
    """The app; ``svc`` lets a caller inject already opened services (tests, benchmarks),
    which the caller then closes. The sweeper runs either way, for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = svc is None
        services = svc or await GatewayServices.open(settings)
        app.state.services = services
        services.sweeper.start()
        try:
            yield
        finally:
            await services.sweeper.stop()
            if owned:
                await services.close()

    return Litestar(
        route_handlers=[*ROUTES, *EXTRA_ROUTES, *FILE_ROUTES, OPENAI_ROUTER, *OPERATOR_ROUTES,
                        *UI_ROUTES],
        lifespan=[lifespan],
        exception_handlers={Exception: E.handle_exception, HTTPException: E.handle_exception},
        middleware=[observe_middleware],
        logging_config=None,  # the process's JSON lines (core.logs), not Litestar's text
        request_max_body_size=settings.max_body_bytes,
        state=State(),
        openapi_config=OpenAPIConfig(
            title="inferq", version="1", path="/schema",
            render_plugins=[FinishedJsonPlugin(settings)],
            description="Asynchronous batch inference: POST a job, poll its status, fetch "
                        "results. Every error is an RFC 9457 problem+json document with "
                        "`code` and `retryable`.",
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         description="Authorization: Bearer <api key>")})),
        debug=False,
    )
