"""The Litestar application: routes, the error envelope, metrics, and the lifespan that owns
the connections (opened on start-up, drained and closed on shutdown)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import errors as E
from gateway.services import GatewayServices
from gateway.tenants import Tenant
from inferq import metrics
from inferq.config import Settings
from schemas.api import JobStatusDoc, ResultsPage, SubmitRequest
from store.jobstate import JobStatusSnapshot

TERMINAL = ("succeeded", "failed")


def services(request: Request) -> GatewayServices:
    return request.app.state.services


def authenticate(request: Request) -> Tenant:
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise E.Unauthenticated("send `Authorization: Bearer <api key>`")
    tenant = services(request).tenants.authenticate(key.strip())
    if tenant is None:
        raise E.Unauthenticated("unknown API key")
    return tenant


def poll_hint(snap: JobStatusSnapshot) -> float | None:
    """When polling again is worth it: never for a terminal job; sooner for small jobs."""
    if snap.status in TERMINAL:
        return None
    pending = snap.total - snap.succeeded - snap.failed
    return 1.0 if pending <= 100 else 2.0 if pending <= 2_000 else 5.0


def status_response(snap: JobStatusSnapshot, status_code: int = 200,
                    headers: dict[str, str] | None = None) -> Response[JobStatusDoc]:
    h = {"ETag": snap.etag, "Cache-Control": "no-cache", **(headers or {})}
    hint = poll_hint(snap)
    if hint is not None:
        h["Retry-After"] = str(int(hint))
    return Response(snap.to_doc(), status_code=status_code, headers=h)


@post("/v1/jobs", status_code=202, summary="Submit a job (one item or up to 10,000)")
async def submit_job(
    request: Request, data: SubmitRequest,
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key",
                                                           required=False)] = None,
) -> Response[JobStatusDoc]:
    tenant = authenticate(request)
    svc = services(request)
    done = await svc.submitter.submit(tenant, data, idempotency_key)
    snap = await svc.reader.status(tenant.name, done.job_id)
    headers = {"Location": f"/v1/jobs/{done.job_id}"}
    if done.replayed:
        headers["Idempotency-Replayed"] = "true"
    return status_response(snap, 202, headers)


@get("/v1/jobs/{job_id:str}", summary="A job's status document (O(1))")
async def get_job(request: Request, job_id: FromPath[str]) -> Response[JobStatusDoc]:
    tenant = authenticate(request)
    snap = await services(request).reader.status(tenant.name, job_id)
    if request.headers.get("if-none-match") == snap.etag:
        h = {"ETag": snap.etag}
        if (hint := poll_hint(snap)) is not None:
            h["Retry-After"] = str(int(hint))
        return Response(b"", status_code=304, headers=h)
    return status_response(snap)


@get("/v1/jobs/{job_id:str}/results", summary="A page of a job's item results, in index order")
async def get_results(
    request: Request, job_id: FromPath[str],
    status: Annotated[str | None, QueryParameter(pattern="^(succeeded|failed)$",
                                                 required=False)] = None,
    cursor: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> ResultsPage:
    tenant = authenticate(request)
    return await services(request).reader.page(tenant.name, job_id, status=status,
                                               cursor=cursor, limit=limit)


@get("/v1/jobs/{job_id:str}/results.jsonl", summary="Every item, one JSON line each, streamed",
     media_type="application/x-ndjson")
async def get_results_jsonl(request: Request, job_id: FromPath[str]) -> Stream:
    tenant = authenticate(request)
    lines = await services(request).reader.jsonl(tenant.name, job_id)
    return Stream(lines, media_type="application/x-ndjson")


@get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: NATS, Redis and the result store answer")
async def readyz(request: Request) -> dict[str, str]:
    svc = services(request)
    checks: dict[str, str] = {}
    checks["nats"] = "ok" if svc.nc.is_connected else "down"
    try:
        await svc.cache.ping()
        checks["redis"] = "ok"
    except Exception:  # noqa: BLE001 - reported, not raised
        checks["redis"] = "down"
    try:
        await svc.store.ping()
        checks["store"] = "ok"
    except Exception:  # noqa: BLE001
        checks["store"] = "down"
    down = [k for k, v in checks.items() if v != "ok"]
    if down:
        raise E.Unavailable(f"not ready: {', '.join(down)} down", retry_after_s=2)
    return checks


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """HTTP latency by route template and status."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            handler = scope.get("route_handler")
            route = next(iter(handler.paths)) if handler is not None else "unmatched"
            metrics.HTTP_LATENCY.labels(scope["method"], route, str(status["code"])).observe(
                time.perf_counter() - t0)

    return middleware


def create_app(settings: Settings, svc: GatewayServices | None = None) -> Litestar:
    """The app; ``svc`` lets a caller inject already opened services (tests, ``inferq dev``)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = svc is None
        app.state.services = svc or await GatewayServices.open(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.services.close()

    return Litestar(
        route_handlers=[submit_job, get_job, get_results, get_results_jsonl, healthz, readyz,
                        metrics_endpoint],
        lifespan=[lifespan],
        exception_handlers={Exception: E.handle_exception, HTTPException: E.handle_exception},
        middleware=[metrics_middleware],
        request_max_body_size=settings.max_body_bytes,
        state=State(),
        openapi_config=OpenAPIConfig(title="inferq", version="1", path="/schema"),
        debug=False,
    )
