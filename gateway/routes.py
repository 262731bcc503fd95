"""The HTTP API's route handlers. Authentication is a guard, so it runs before the body is
read; admission (rate limits, quota, backlog) runs in the handlers before any work."""

from __future__ import annotations

from typing import Annotated

from litestar import HttpMethod, Request, Response, post, route
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.tenants import Tenant
from core.tracing import bind_fields
from gateway import errors as E
from gateway.artifact import respond as respond_jsonl
from gateway.auth import identify
from gateway.body import decode_submit
from gateway.limits import IDEMPOTENCY_HEADER, check_idempotency_key
from gateway.polls import answer_poll, status_headers
from gateway.services import GatewayServices
from gateway.submit import Submitted
from schemas.api import JobList, JobStatusDoc, Problem, ResultsPage
from schemas.dryrun import DryRunReport
from schemas.errors import ErrorCode
from schemas.states import ItemStatus
from store.jobstate import JobStatusSnapshot

_DESCRIPTIONS = {
    400: "`invalid_request` (with field pointers in `errors`) or `model_not_found`",
    401: "`unauthenticated`: missing or unknown API key",
    404: "`job_not_found`: unknown, expired or another tenant's job",
    409: "`idempotency_in_progress`: the first request with this key is unfinished (retry)",
    413: "`payload_too_large`: body, items per job, text length or metadata size",
    415: "`unsupported_media_type`: the body is not declared `application/json`",
    422: "`idempotency_key_reused`: the same Idempotency-Key with a different body",
    429: "`rate_limited` / `quota_exceeded`, with Retry-After and RateLimit headers",
    503: "`overloaded` / `unavailable`, with Retry-After",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The error responses of a route, for the OpenAPI document (one envelope: Problem)."""
    return {s: ResponseSpec(Problem, description=_DESCRIPTIONS[s],
                            media_type=E.PROBLEM_JSON, generate_examples=False)
            for s in statuses}


def services(request: Request) -> GatewayServices:
    """The services the app's lifespan opened."""
    return request.app.state.services


async def authenticated(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: ``Authorization: Bearer <key>`` names a tenant; keep it and the key's id.
    A coroutine on purpose: Litestar runs a plain-function guard in a worker thread, and the
    hand-off to and from the thread cost a quarter of a status poll."""
    connection.state.tenant, connection.state.key_id = identify(
        connection.app.state.services.tenants, connection.headers.get("authorization", ""))


def caller(request: Request) -> tuple[Tenant, str]:
    """The tenant and key id the guard found; binds the tenant into the request's logs."""
    bind_fields(tenant=request.state.tenant.name)  # into the request's log lines from here
    return request.state.tenant, request.state.key_id


def status_response(svc: GatewayServices, snap: JobStatusSnapshot, status_code: int = 200,
                    headers: dict[str, str] | None = None) -> Response[JobStatusDoc]:
    """A status document with its ETag and, while the job runs, a Retry-After poll hint."""
    return Response(snap.to_doc(), status_code=status_code,
                    headers=status_headers(svc, snap, headers))


JobId = FromPath[str]
# ``?status=`` filters results by a terminal item status.
_TERMINAL_ITEM_PATTERN = f"^({ItemStatus.SUCCEEDED}|{ItemStatus.FAILED})$"
WITH_AUTH = {"guards": [authenticated], "security": [{"bearer": []}]}


def get_and_head(path: str, **kwargs):
    """A GET route that answers HEAD too (RFC 9110: the same headers, no body; the server
    drops the body). The OpenAPI document lists the GET only."""
    return route(path, http_method=[HttpMethod.GET, HttpMethod.HEAD], **kwargs)


@post("/v1/jobs", status_code=202, summary="Submit a job (one item or up to 10,000)",
      responses={**problems(400, 401, 409, 413, 415, 422, 429, 503),
                 404: ResponseSpec(Problem, description="`file_not_found`: `input_file_id` "
                                   "names no live file of the tenant's",
                                   media_type=E.PROBLEM_JSON, generate_examples=False),
                 200: ResponseSpec(DryRunReport, generate_examples=False,
                                   description="`dry_run=true`: the report; nothing created")},
      **WITH_AUTH)
async def submit_job(
    request: Request,
    idempotency_key: Annotated[str | None, HeaderParameter(
        name=IDEMPOTENCY_HEADER, required=False,
        description="Makes the submission exactly-once per (tenant, key) for 24 h")] = None,
    dry_run: Annotated[bool, QueryParameter(
        required=False, description="Check, tokenize and estimate only: 200 with the "
        "report, nothing created, one request token spent")] = False,
) -> Response[JobStatusDoc]:
    """Admit and queue a job; a repeated Idempotency-Key replays the first job's answer. The
    body is read raw and decoded once, typed (gateway/body.py); its schema is in the OpenAPI
    document (gateway/openapi.py)."""
    tenant, key_id = caller(request)
    svc = services(request)
    key = check_idempotency_key(idempotency_key, svc.settings)
    data = decode_submit(await request.body(), request.headers.get("content-type"),
                         svc.settings)
    if dry_run and svc.dry_run is not None:  # gateway/dryrun.py
        report, headers = await svc.dry_run.report(tenant, key_id, data)
        return Response(report, status_code=200, headers=headers)  # type: ignore[arg-type]
    # A job from an uploaded file is published in the background (gateway/filejobs.py).
    submitter = svc.filejobs if data.input_file_id is not None else svc.submitter
    done = await submitter.submit(tenant, key_id, data, key,
                                  traceparent=request.scope["state"].get("traceparent"))
    return await accepted(svc, tenant, done)


async def accepted(svc: GatewayServices, tenant: Tenant, done: Submitted
                   ) -> Response[JobStatusDoc]:
    """202 with the queued job's status document, its Location and, for a replayed
    Idempotency-Key, ``Idempotency-Replayed: true``."""
    snap = await svc.reader.status(tenant.name, done.job_id)
    headers = {"Location": f"/v1/jobs/{done.job_id}", **done.headers}
    if done.replayed:
        headers["Idempotency-Replayed"] = "true"
    return status_response(svc, snap, 202, headers)


@get_and_head("/v1/jobs", summary="The tenant's jobs, newest first, paged",
              responses=problems(400, 401, 429, 503), **WITH_AUTH)
async def list_jobs(
    request: Request,
    cursor: Annotated[str | None, QueryParameter(required=False, max_length=512)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> Response[JobList]:
    """A page of the tenant's live jobs, newest first."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    page = await svc.reader.list(tenant.name, cursor=cursor, limit=limit)
    return Response(page, headers=headers)


@get_and_head("/v1/jobs/{job_id:str}", summary="A job's status document (O(1)); ETag / 304",
              responses=problems(400, 401, 404, 429, 503), **WITH_AUTH)
async def get_job(
    request: Request, job_id: JobId,
    if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match",
                                                         required=False)] = None,
) -> Response[JobStatusDoc]:
    """The job's status; a matching If-None-Match is a 304 that costs half a poll. Served by
    the fast path in gateway/polls.py unless ``Settings.fast_status_polls`` is off (or for
    HEAD); both answer through ``answer_poll``."""
    tenant, key_id = caller(request)
    answer = await answer_poll(services(request), tenant, key_id, job_id, if_none_match)
    if answer.status_code == 304:
        return Response(b"", status_code=304, headers=answer.headers)
    return Response(answer.snap.to_doc(), headers=answer.headers)


@post("/v1/jobs/{job_id:str}/cancel", status_code=200,
      summary="Cancel: items not yet run fail `cancelled`; done items keep their results",
      responses=problems(400, 401, 404, 429, 503), **WITH_AUTH)
async def cancel_job(request: Request, job_id: JobId) -> Response[JobStatusDoc]:
    """End the job now: items not yet run fail ``cancelled``; idempotent."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.write(tenant, key_id)
    job = await svc.reader.owned_job(tenant.name, job_id)
    snap = await svc.ender.end_now(job, ErrorCode.CANCELLED)
    return status_response(svc, snap, 200, headers)


@get_and_head("/v1/jobs/{job_id:str}/results",
              summary="A page of a job's item results, in index order",
              responses=problems(400, 401, 404, 429, 503), **WITH_AUTH)
async def get_results(
    request: Request, job_id: JobId,
    status: Annotated[str | None, QueryParameter(pattern=_TERMINAL_ITEM_PATTERN,
                                                 required=False)] = None,
    cursor: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> Response[ResultsPage]:
    """A page of item results in index order, optionally only succeeded or failed ones."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    page = await svc.reader.page(tenant.name, job_id, cursor=cursor, limit=limit,
                                 status=ItemStatus(status) if status else None)
    return Response(page, headers=headers)


@get_and_head("/v1/jobs/{job_id:str}/results.jsonl",
              summary="Every item, one JSON line each, streamed",
              media_type="application/x-ndjson", responses=problems(400, 401, 404, 429, 503),
              **WITH_AUTH)
async def get_results_jsonl(request: Request, job_id: JobId) -> Stream:
    """Every item result as one JSON line each, streamed in index order; once the job is
    terminal, a fixed artifact: ``Range`` gives ``206``, ``Repr-Digest`` its SHA-256."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    # Terminal: byte-stable, with ETag, Repr-Digest, Content-Length and Range (206).
    return await respond_jsonl(svc.artifacts, tenant.name, job_id, request.headers, headers)


@get_and_head("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get_and_head("/readyz", summary="Readiness: NATS, Redis and the result store answer; the "
              "store writes; which models have no runner",
              responses=problems(503))
async def readyz(request: Request) -> dict[str, str]:
    """Readiness: 200 when NATS, Redis and the result store answer, else 503 naming them.
    ``runners`` names the models no live runner serves (503 too with ``ready_requires_runners``,
    which ``inferq dev`` sets)."""
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
    missing: list[str] = []
    if not down:
        missing = await svc.load.models_without_runner()
    checks["runners"] = "ok" if not missing else "none for " + ", ".join(missing)
    if down:
        raise E.Unavailable(f"not ready: {', '.join(down)} down", retry_after_s=2)
    if missing and svc.settings.ready_requires_runners:
        raise E.Unavailable(f"not ready: no runner serves {', '.join(missing)}",
                            retry_after_s=2)
    return checks


@get_and_head("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint() -> Response[bytes]:
    """The process's Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def options_handlers(handlers: list) -> list:
    """One OPTIONS handler per path, answering 204 with every method of the path in
    ``Allow`` (RFC 9110). Litestar makes its own per handler, and one made for the first of
    two handlers on a path (POST /v1/jobs) leaves out the second's methods (GET, HEAD)."""
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, {"OPTIONS"}).update(handler.http_methods)
    return [_options(path, ", ".join(sorted(allowed))) for path, allowed in methods.items()]


def _options(path: str, allow: str):
    async def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    return route(path, http_method=[HttpMethod.OPTIONS], include_in_schema=False,
                 name=f"options {path}")(options)


_HANDLERS = [submit_job, list_jobs, get_job, cancel_job, get_results, get_results_jsonl, healthz,
             readyz, metrics_endpoint]
# The OPTIONS handlers first: a path's first handler decides whether Litestar adds its own.
ROUTES = options_handlers(_HANDLERS) + _HANDLERS
