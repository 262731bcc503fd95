"""Status polls: the one request tenants make most, answered cheaply.

``answer_poll`` is what a poll does (admission from the key's polls bucket, the status from
one Redis read, 304 on a matching ``If-None-Match``); the Litestar route and the fast path
below both call it, so the two cannot answer differently.

``StatusPolls`` answers ``GET /v1/jobs/{job_id}`` before Litestar's router: a poll through
Litestar's routing, signature model, guard, response object and middleware stack cost about
as much again as the poll's own work (profiled under ``wrk``; see bench/bench_api.py). It
keeps everything a client sees — the same headers, the same body bytes, the same problem
documents, request ids, traces, logs and the latency metric — which a test pins by asking
both paths the same questions. Anything else (other methods, HEAD, other paths) goes to
Litestar untouched. ``Settings.fast_status_polls`` turns it off.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from core.tenants import Tenant
from core.tracing import bind_fields
from gateway import errors as E
from gateway.admission import CONDITIONAL_POLL_COST, POLL_COST
from gateway.auth import identify
from gateway.observe import Observed
from gateway.services import GatewayServices
from store.jobstate import JobStatusSnapshot

STATUS_ROUTE = "/v1/jobs/{job_id:str}"
"""The status route's template: its label in the latency metric on both paths."""

_PREFIX = "/v1/jobs/"
_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", E.PROBLEM_JSON.encode())]
_ENC = msgspec.json.Encoder()


class PollAnswer(NamedTuple):
    """A poll's answer: 200 with the snapshot's document, or 304 without a body."""

    status_code: int
    headers: dict[str, str]
    snap: JobStatusSnapshot


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag, compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def status_headers(svc: GatewayServices, snap: JobStatusSnapshot,
                   headers: dict[str, str] | None = None) -> dict[str, str]:
    """A status answer's headers: its ETag, no-cache, and while the job runs a Retry-After
    poll hint."""
    h = {"ETag": snap.etag, "Cache-Control": "no-cache", **(headers or {})}
    if (hint := svc.load.poll_hint(snap)) is not None:
        h["Retry-After"] = str(hint)
    return h


async def answer_poll(svc: GatewayServices, tenant: Tenant, key_id: str, job_id: str,
                      if_none_match: str | None) -> PollAnswer:
    """One status poll. A conditional poll pays half up front; the other half only if it is
    answered with a 200 (a 304 costs half a poll)."""
    cost = CONDITIONAL_POLL_COST if if_none_match else POLL_COST
    headers = await svc.admission.read(tenant, key_id, cost)
    snap = await svc.reader.status(tenant.name, job_id)
    if etag_matches(if_none_match, snap.etag):
        h = {"ETag": snap.etag, **headers}
        if (hint := svc.load.poll_hint(snap)) is not None:
            h["Retry-After"] = str(hint)
        return PollAnswer(304, h, snap)
    if if_none_match:
        headers = await svc.admission.charge_read(tenant, key_id, POLL_COST - cost)
    return PollAnswer(200, status_headers(svc, snap, headers), snap)


class StatusPolls:
    """ASGI in front of Litestar's handler (see the module's docstring)."""

    def __init__(self, app: Litestar, inner: ASGIApp):
        self._app = app
        self._inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        svc = getattr(self._app.state, "services", None)
        if (scope["type"] != "http" or scope["method"] != "GET" or svc is None
                or not path.startswith(_PREFIX) or "/" in path[len(_PREFIX):]
                or len(path) == len(_PREFIX)):
            await self._inner(scope, receive, send)
            return
        await self._poll(svc, scope, path[len(_PREFIX):], send)

    async def _poll(self, svc: GatewayServices, scope: Scope, job_id: str, send: Send) -> None:
        seen = Observed(scope)
        authorization = if_none_match = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"if-none-match":
                if_none_match = v.decode("latin-1")
        status = 500
        with seen.bound():
            try:
                tenant, key_id = identify(svc.tenants, authorization or "")
                bind_fields(tenant=tenant.name)
                answer = await answer_poll(svc, tenant, key_id, job_id, if_none_match)
                status, kind = answer.status_code, _JSON
                body = b"" if status == 304 else _ENC.encode(answer.snap.to_doc())
                headers = answer.headers
            except Exception as exc:  # noqa: BLE001 - the one translator, as Litestar's handler uses it
                err = E.translate(exc)
                status, kind = err.status_code, _PROBLEM
                body, headers = E.problem_parts(err, seen.request_id)
        raw = [*kind, (b"content-length", str(len(body)).encode())] if status != 304 else []
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        try:
            await send({"type": "http.response.start", "status": status,
                        "headers": seen.headers(raw)})
            await send({"type": "http.response.body", "body": body})
        finally:
            seen.done("GET", STATUS_ROUTE, status)
