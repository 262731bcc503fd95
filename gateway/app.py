"""The Litestar application: routes, the error envelope, metrics, and the lifespan that owns
the connections and the background sweeper (opened and started on start-up; stopped, then
closed, on shutdown)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from core.config import Settings
from gateway import errors as E
from gateway.extra_routes import EXTRA_ROUTES
from gateway.fileroutes import FILE_ROUTES
from gateway.observe import observe_middleware
from gateway.openai.routes import OPENAI_ROUTER
from gateway.openapi import FinishedJsonPlugin
from gateway.operator import OPERATOR_ROUTES
from gateway.polls import StatusPolls
from gateway.routes import ROUTES
from gateway.services import GatewayServices
from gateway.ui import UI_ROUTES
from gateway.usage import USAGE_ROUTES


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

    app = Litestar(
        route_handlers=[*ROUTES, *EXTRA_ROUTES, *FILE_ROUTES, OPENAI_ROUTER, *OPERATOR_ROUTES,
                        *UI_ROUTES, *USAGE_ROUTES],
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
    if settings.fast_status_polls:  # status polls skip the router (gateway/polls.py)
        app.asgi_handler = StatusPolls(app, app.asgi_handler)
    return app
