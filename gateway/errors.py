"""One error envelope everywhere: RFC 9457 problem+json with ``code`` and ``retryable``.

Every error path — ours, Litestar's validation, 404/405, and unexpected exceptions — is
translated here and nowhere else.
"""

from __future__ import annotations

import logging
import math
import re
import uuid

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from schemas.api import FieldError, Problem
from schemas.errors import ErrorCode

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
    status_code, code, title = 400, ErrorCode.INVALID_REQUEST, "Invalid request"


class ModelNotFoundError(ApiError):
    status_code, code, title = 400, ErrorCode.MODEL_NOT_FOUND, "Unknown model"


class Unauthenticated(ApiError):
    status_code, code, title = 401, ErrorCode.UNAUTHENTICATED, "Missing or invalid API key"


class JobNotFound(ApiError):
    status_code, code, title = 404, ErrorCode.JOB_NOT_FOUND, "Job not found"


class RouteNotFound(ApiError):
    status_code, code, title = 404, ErrorCode.NOT_FOUND, "No such route"


class MethodNotAllowed(ApiError):
    status_code, code, title = 405, ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed"


class IdempotencyInProgress(ApiError):
    status_code, code, retryable = 409, ErrorCode.IDEMPOTENCY_IN_PROGRESS, True
    title = "A request with this Idempotency-Key is still in progress"


class PayloadTooLarge(ApiError):
    status_code, code, title = 413, ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large"


class IdempotencyKeyReused(ApiError):
    status_code, code = 422, ErrorCode.IDEMPOTENCY_KEY_REUSED
    title = "Idempotency-Key reused with a different request"


class RateLimited(ApiError):
    status_code, code, retryable, title = 429, ErrorCode.RATE_LIMITED, True, "Rate limited"


class QuotaExceeded(ApiError):
    status_code, code, retryable = 429, ErrorCode.QUOTA_EXCEEDED, True
    title = "Backlog quota exceeded"


class Overloaded(ApiError):
    status_code, code, retryable = 503, ErrorCode.OVERLOADED, True
    title = "Service over its backlog limit"


class Unavailable(ApiError):
    status_code, code, retryable = 503, ErrorCode.UNAVAILABLE, True
    title = "A dependency is unavailable"


def request_id(request: Request) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.scope.setdefault("state", {})["request_id"] = rid
    return rid


def problem_response(request: Request, err: ApiError) -> Response:
    rid = request_id(request)
    body = Problem(
        type=f"https://inferq.dev/errors/{err.code}",
        title=err.title, status=err.status_code, detail=err.detail, code=str(err.code),
        retryable=err.retryable, request_id=rid, retry_after_s=err.retry_after_s,
        errors=err.errors,
    )
    headers = {"X-Request-Id": rid, **err.headers}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))
    return Response(_ENC.encode(body), status_code=err.status_code, media_type=PROBLEM_JSON,
                    headers=headers)


_PATH = re.compile(r"at `\$(?P<path>[^`]*)`")


def json_pointer(msgspec_path: str) -> str:
    """``$.inputs[0].text`` (msgspec's notation) → ``/inputs/0/text`` (RFC 6901)."""
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]|\[\'([^\']+)\'\]", msgspec_path)
    return "".join("/" + (a or b or c).replace("~", "~0").replace("/", "~1") for a, b, c in parts)


def field_errors_from_message(message: str, prefix: str = "") -> list[FieldError]:
    m = _PATH.search(message)
    pointer = prefix + (json_pointer(m.group("path")) if m else "")
    text = _PATH.sub("", message).rstrip(" -")
    return [FieldError(pointer=pointer or "/", detail=text)]


def _translate(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationException):
        errors: list[FieldError] = []
        extra = exc.extra if isinstance(exc.extra, list) else []
        for e in extra:
            if isinstance(e, dict):
                errors += field_errors_from_message(str(e.get("message", "")))
        detail = exc.detail or "the request is not valid"
        if "too large" in detail.lower() or getattr(exc, "status_code", 400) == 413:
            return PayloadTooLarge(detail)
        return InvalidRequest(detail, errors=errors or None)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 404:
            return RouteNotFound(exc.detail or "no such route")
        if status == 405:
            return MethodNotAllowed(exc.detail or "method not allowed")
        if status == 413:
            return PayloadTooLarge(exc.detail or "request body too large")
        if 400 <= status < 500:
            return InvalidRequest(exc.detail or "bad request")
    log.exception("unhandled error", exc_info=exc)
    return ApiError("an unexpected error occurred; it has been logged")


def handle_exception(request: Request, exc: Exception) -> Response:
    return problem_response(request, _translate(exc))
