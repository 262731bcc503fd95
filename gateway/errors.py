"""One error envelope everywhere: RFC 9457 problem+json with ``code`` and ``retryable``.

Every error path — ours, Litestar's validation, 404/405/413, a dependency (Redis, the result
store, NATS) that is down, and unexpected exceptions — is translated here and nowhere else.
"""

from __future__ import annotations

import logging
import math
import re
import uuid

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from nats import errors as nats_errors

from core import metrics
from core.bus import BusError
from schemas.api import FieldError, Problem
from schemas.errors import ErrorCode
from store.redis_errors import CacheError
from store.results.base import InvalidCursor, StoreError

log = logging.getLogger("inferq.gateway")
PROBLEM_JSON = "application/problem+json"
_ENC = msgspec.json.Encoder()


class ApiError(Exception):
    """Root of the gateway's errors: the class carries status and code, the instance detail."""

    status_code = 500
    code = ErrorCode.INTERNAL_ERROR
    retryable = False
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None,
                 retry_after_s: float | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


class InvalidRequest(ApiError):
    """400: the request is malformed; ``errors`` points at each bad field."""

    status_code, code, title = 400, ErrorCode.INVALID_REQUEST, "Invalid request"


class ModelNotFoundError(ApiError):
    """400: the model (or pinned version) is not in the repository."""

    status_code, code, title = 400, ErrorCode.MODEL_NOT_FOUND, "Unknown model"


class Unauthenticated(ApiError):
    """401: no bearer key, or one no tenant holds."""

    status_code, code, title = 401, ErrorCode.UNAUTHENTICATED, "Missing or invalid API key"


class JobNotFound(ApiError):
    """404: unknown, expired or another tenant's job (never a 403: ids are not confirmed)."""

    status_code, code, title = 404, ErrorCode.JOB_NOT_FOUND, "Job not found"


class RouteNotFound(ApiError):
    """404: no such route."""

    status_code, code, title = 404, ErrorCode.NOT_FOUND, "No such route"


class MethodNotAllowed(ApiError):
    """405: the route exists, the method does not."""

    status_code, code, title = 405, ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed"


class UnsupportedMediaType(ApiError):
    """415: a submission whose body is not declared JSON (``Content-Type``)."""

    status_code, code = 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE
    title = "Unsupported media type"


class IdempotencyInProgress(ApiError):
    """409 (retryable): the first request with this Idempotency-Key has not finished."""

    status_code, code, retryable = 409, ErrorCode.IDEMPOTENCY_IN_PROGRESS, True
    title = "A request with this Idempotency-Key is still in progress"


class NothingToRetry(ApiError):
    """409: a retry of a job none of whose items failed (retryably, unless ``all_failed``)."""

    status_code, code, title = 409, ErrorCode.NOTHING_TO_RETRY, "Nothing to retry"


class InputsNotKept(ApiError):
    """409: a retry of a job whose inputs were not kept (submitted before inputs were kept,
    or with ``keep_inputs`` off): submit its items again instead."""

    status_code, code, title = 409, ErrorCode.INPUTS_NOT_KEPT, "Inputs not kept"


class PayloadTooLarge(ApiError):
    """413: the body, items per job, a text or the metadata is over its limit."""

    status_code, code, title = 413, ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large"


class IdempotencyKeyReused(ApiError):
    """422: an Idempotency-Key sent again with a different body."""

    status_code, code = 422, ErrorCode.IDEMPOTENCY_KEY_REUSED
    title = "Idempotency-Key reused with a different request"


class RateLimited(ApiError):
    """429 (retryable): the API key is over one of its rates; Retry-After says when."""

    status_code, code, retryable, title = 429, ErrorCode.RATE_LIMITED, True, "Rate limited"


class QuotaExceeded(ApiError):
    """429 (retryable): the tenant's backlog quota is full until its items drain."""

    status_code, code, retryable = 429, ErrorCode.QUOTA_EXCEEDED, True
    title = "Backlog quota exceeded"


class Overloaded(ApiError):
    """503 (retryable): the model's backlog is over the system-wide limit."""

    status_code, code, retryable = 503, ErrorCode.OVERLOADED, True
    title = "Service over its backlog limit"


class Unavailable(ApiError):
    """503 (retryable): Redis, the result store or NATS is down or timed out."""

    status_code, code, retryable = 503, ErrorCode.UNAVAILABLE, True
    title = "A dependency is unavailable"


def request_id(request: Request) -> str:
    """The request's id (set by the trace middleware; else the header or a new one)."""
    rid = request.scope.get("state", {}).get("request_id")
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.scope.setdefault("state", {})["request_id"] = rid
    return rid


def problem_parts(err: ApiError, rid: str) -> tuple[bytes, dict[str, str]]:
    """The RFC 9457 problem+json body of ``err`` and its headers (X-Request-Id, Retry-After);
    counts a retryable refusal. Shared by Litestar's handler and the status-poll fast path."""
    body = Problem(
        type=f"https://inferq.dev/errors/{err.code}",
        title=err.title, status=err.status_code, detail=err.detail, code=str(err.code),
        retryable=err.retryable, request_id=rid, retry_after_s=err.retry_after_s,
        errors=err.errors,
    )
    headers = {"X-Request-Id": rid, **err.headers}
    if err.retryable:
        metrics.REJECTIONS.labels(str(err.code)).inc()
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))
    return _ENC.encode(body), headers


def problem_response(request: Request, err: ApiError) -> Response:
    """The RFC 9457 problem+json response of ``err``, with X-Request-Id and Retry-After."""
    body, headers = problem_parts(err, request_id(request))
    return Response(body, status_code=err.status_code, media_type=PROBLEM_JSON,
                    headers=headers)


def key_pointer(key: str, source: object, message: str = "") -> str:
    """Where a Litestar validation error points: a JSON pointer (RFC 6901) into the body,
    e.g. ``inputs[1].text`` -> ``/inputs/1/text``, or ``query:<name>``, ``header:<name>``,
    ``path:<name>`` for parameters. An unknown member is pointed at itself."""
    kind = str(getattr(source, "value", source) or "body").lower()
    if kind != "body":
        return f"{kind}:{key}"
    parts = [p for p in key.replace("[", ".").replace("]", "").split(".") if p]
    if parts == ["data"]:  # Litestar's name for the whole body
        parts = []
    if m := _UNKNOWN.search(message):
        parts.append(m.group(1))
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def field_errors(extra: object) -> list[FieldError]:
    """Litestar's validation details as pointers to the offending fields."""
    out: list[FieldError] = []
    for e in extra if isinstance(extra, list) else []:
        if isinstance(e, dict):
            message = str(e.get("message", "invalid"))
            out.append(FieldError(key_pointer(str(e.get("key") or ""), e.get("source"),
                                              message), message))
    return out


def _translate(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidCursor):
        return InvalidRequest("cursor is not one this API returned",
                              errors=[FieldError("query:cursor", "invalid cursor")])
    if isinstance(exc, CacheError | StoreError) and exc.retryable:
        what = "Redis" if isinstance(exc, CacheError) else "the result store"
        log.warning("dependency unavailable: %s", exc)
        return Unavailable(f"{what} is unavailable; retry shortly", retry_after_s=2)
    if isinstance(exc, BusError | nats_errors.Error):
        log.warning("message bus unavailable: %r", exc)
        return Unavailable("the message bus (NATS) is unavailable; retry shortly",
                           retry_after_s=2)
    if isinstance(exc, TimeoutError):
        log.warning("a dependency timed out: %r", exc)
        return Unavailable("a dependency timed out; retry shortly", retry_after_s=2)
    if isinstance(exc, ValidationException):
        detail = exc.detail or "the request is not valid"
        if "too large" in detail.lower() or getattr(exc, "status_code", 400) == 413:
            return PayloadTooLarge(detail)
        return InvalidRequest(detail, errors=field_errors(exc.extra) or None)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 404:
            return RouteNotFound(exc.detail or "no such route")
        if status == 405:  # RFC 9110: a 405 says which methods the resource has
            allow = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
            return MethodNotAllowed(exc.detail or "method not allowed",
                                    headers={"Allow": allow} if allow else None)
        if status == 413:
            return PayloadTooLarge(exc.detail or "request body too large")
        if 400 <= status < 500:
            return InvalidRequest(exc.detail or "bad request")
    log.exception("unhandled error", exc_info=exc)
    return ApiError("an unexpected error occurred; it has been logged")


def handle_exception(request: Request, exc: Exception) -> Response:
    """The app's one exception handler: translate, then answer with the envelope."""
    return problem_response(request, _translate(exc))


def translate(exc: Exception) -> ApiError:
    """Any exception as the ApiError it answers with: for error shapes other than problem+json
    (the OpenAI-compatible routes) that must agree with this one on status and code."""
    return _translate(exc)
