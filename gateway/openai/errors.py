"""OpenAI's error shape, for the ``/openai/v1`` routes only: ``{"error": {message, type,
param, code}}``. Every exception is first translated by the gateway's one translator
(gateway/errors.py), so status, retryability and Retry-After agree with the native API; only
the body differs, and an unknown model is a 404 here, as the official client expects.

``Retry-After`` (whole seconds) and ``retry-after-ms`` (exact; the official client prefers it)
go on every retryable answer that has a hint, so the client's built-in retries wait as long
as the server asks and no longer.
"""

from __future__ import annotations

import math

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException

from core import metrics
from gateway import errors as E
from schemas.api import FieldError
from schemas.errors import ErrorCode
from schemas.openai import ErrorDetail, ErrorResponse

_ENC = msgspec.json.Encoder()

UNSUPPORTED_PARAMETER = "unsupported_parameter"
NOT_OFFERED = "not_offered"
TIMEOUT = "timeout"

# inferq's code -> OpenAI's name for the same thing, where OpenAI has one.
_OPENAI_CODES = {
    ErrorCode.UNAUTHENTICATED: "invalid_api_key",
    ErrorCode.RATE_LIMITED: "rate_limit_exceeded",
    ErrorCode.NOT_FOUND: "unknown_url",
}
# OpenAI answers an unknown model with a 404 (the client raises NotFoundError).
_STATUS = {ErrorCode.MODEL_NOT_FOUND: 404}


class UnsupportedParameter(E.InvalidRequest):
    """400: a parameter the OpenAI API has and this server does not implement (or a value of
    it that it does not): refused by name rather than silently ignored."""

    code = UNSUPPORTED_PARAMETER  # type: ignore[assignment]


class NotOffered(E.ApiError):
    """404: a part of the OpenAI API this server does not offer (uploads, listing or deleting
    files)."""

    status_code, code, title = 404, NOT_OFFERED, "Not offered"  # type: ignore[assignment]


class Timeout(E.ApiError):
    """504 (retryable): the job behind a synchronous call did not end within
    ``openai_wait_s``; the job ends by its deadline, and a retry queues the texts again."""

    status_code, code, retryable = 504, TIMEOUT, True  # type: ignore[assignment]
    title = "Timed out waiting for the model"


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def param_of(errors: list[FieldError] | None) -> str | None:
    """The first field error's body pointer as OpenAI names parameters (``/input/3`` ->
    ``input[3]``); None for headers, query parameters or no pointer."""
    if not errors or not errors[0].pointer.startswith("/"):
        return None
    parts = errors[0].pointer.strip("/").split("/")
    return parts[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1:])


def openai_error_response(request: Request, exc: Exception) -> Response:
    """The exception handler of the ``/openai/v1`` routes."""
    err = E.translate(exc)
    status = _STATUS.get(err.code, err.status_code)
    code = _OPENAI_CODES.get(err.code, str(err.code))
    message = err.detail
    if isinstance(exc, ValidationException) and err.errors:
        # Litestar's detail names only the route; OpenAI's message carries the reason.
        message = f"{message}: " + "; ".join(
            f"{e.detail} (at {e.pointer or '/'})" for e in err.errors[:5])
    body = ErrorResponse(ErrorDetail(message=message, type=error_type(status),
                                     param=param_of(err.errors), code=code))
    headers = {"X-Request-Id": E.request_id(request), **err.headers}
    if err.retryable:
        metrics.REJECTIONS.labels(str(err.code)).inc()
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))
        headers["retry-after-ms"] = str(max(1, math.ceil(err.retry_after_s * 1000)))
    return Response(_ENC.encode(body), status_code=status, media_type="application/json",
                    headers=headers)
