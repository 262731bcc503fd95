"""``POST /openai/v1/embeddings`` as a native job: the texts become one ``interactive`` job,
admitted, queued and fair-shared exactly like ``POST /v1/jobs`` from the same key, and the
request waits (bounded by ``openai_wait_s``, which is also the job's deadline) for it to end.

Waiting polls the job's O(1) Redis status, backing off from 5 ms to 100 ms: nothing announces
a job's end, and a poll costs one Redis call, against the job's own tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np

from core.tenants import Tenant
from gateway import errors as E
from gateway.openai.errors import Timeout, UnsupportedParameter
from gateway.services import GatewayServices
from schemas.api import FieldError, InputItem, ResultItem, SubmitRequest
from schemas.errors import ErrorCode
from schemas.openai import Embedding, EmbeddingsRequest, EmbeddingsResponse, Usage
from schemas.states import TERMINAL_JOB, ItemStatus, Priority
from store.jobstate import JobStatusSnapshot
from store.runners import RunnerRegistry

MAX_INPUTS = 2048
"""Inputs per request: OpenAI's own limit (the native API takes up to max_items_per_job)."""
_POLL_FIRST_S, _POLL_MAX_S = 0.005, 0.1
INPUT_ERRORS = {ErrorCode.EMPTY_TEXT, ErrorCode.INVALID_TEXT}
"""Item errors that the input caused (a 400); any other failure is the service's (retryable)."""


def texts_of(req: EmbeddingsRequest, max_inputs: int, max_chars: int) -> list[str]:
    """The request's texts in order; 400 for token-id arrays, an empty list or text, or more
    inputs than ``max_inputs`` or a text over ``max_chars``."""
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise E.InvalidRequest("`input` is an empty list; send at least one text",
                               errors=[FieldError("/input", "at least one text")])
    if len(texts) > max_inputs:
        raise E.InvalidRequest(f"`input` has {len(texts)} texts; at most {max_inputs} per "
                               "request (POST /v1/jobs takes larger batches)",
                               errors=[FieldError("/input", f"at most {max_inputs} texts")])
    for i, text in enumerate(texts):
        pointer = "/input" if isinstance(req.input, str) else f"/input/{i}"
        if not isinstance(text, str):
            raise UnsupportedParameter(
                "token-id arrays are not supported as `input`: send the text (this server "
                "tokenizes with the model's own tokenizer)",
                errors=[FieldError(pointer, "token ids")])
        if not text:
            raise E.InvalidRequest("`input` must not contain an empty string",
                                   errors=[FieldError(pointer, "empty text")])
        if len(text) > max_chars:
            # A 400, as OpenAI answers an input over the model's length (the fuzzer holds
            # schema violations to 400 too).
            raise E.InvalidRequest(f"input {i} is {len(text)} characters; at most {max_chars}",
                                   errors=[FieldError(pointer, f"at most {max_chars}")])
    return texts  # type: ignore[return-value]  # every element checked above


def check_dimensions(req: EmbeddingsRequest, model: str, version: int, dim: int) -> None:
    """400 ``unsupported_parameter`` unless ``dimensions`` is absent or the model's own."""
    if req.dimensions is not None and req.dimensions != dim:
        raise UnsupportedParameter(
            f"`dimensions` {req.dimensions} is not supported: {model}@{version} returns "
            f"{dim}-dimensional vectors only (omit `dimensions` or send {dim})",
            errors=[FieldError("/dimensions", f"only {dim}")])


def encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    """The vector as the client asked: floats, or base64 of little-endian float32 (the
    runner's own precision, so both forms carry the same numbers)."""
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


class EmbeddingsCall:
    """Runs one embeddings request through the native queue and shapes the answer."""

    def __init__(self, svc: GatewayServices):
        self._svc = svc
        self._runners = RunnerRegistry(svc.redis)

    async def run(self, tenant: Tenant, key_id: str, req: EmbeddingsRequest,
                  traceparent: str | None) -> tuple[EmbeddingsResponse, dict[str, str]]:
        """The response and the RateLimit headers of the admission."""
        svc = self._svc
        texts = texts_of(req, min(MAX_INPUTS, svc.settings.max_items_per_job),
                         svc.settings.max_text_chars)
        model, version = svc.submitter.resolve_model(req.model)
        check_dimensions(req, model, version, svc.repo.config(model, version).output_dim)
        if not await self._runners.count(model, version):
            # A synchronous caller would only wait out openai_wait_s: say so now.
            raise E.Unavailable(f"no runner serves {model}@{version} right now; retry shortly",
                                retry_after_s=svc.settings.overload_retry_after_s)
        wait_s = svc.settings.openai_wait_s
        job = SubmitRequest(model=f"{model}@{version}", inputs=[InputItem(t) for t in texts],
                            priority=Priority.INTERACTIVE, timeout_s=wait_s)
        done = await svc.submitter.submit(tenant, key_id, job, None, traceparent=traceparent)
        snap = await self._wait(tenant.name, done.job_id, time.monotonic() + wait_s)
        page = await svc.reader.page(tenant.name, done.job_id, status=None, cursor=None,
                                     limit=len(texts))
        return self._answer(snap, page.items, req.encoding_format), done.headers

    async def _wait(self, tenant: str, job_id: str, deadline: float) -> JobStatusSnapshot:
        delay = _POLL_FIRST_S
        while True:
            snap = await self._svc.reader.status(tenant, job_id)
            if snap.status in TERMINAL_JOB:
                return snap
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(
                    f"the embeddings did not finish within {self._svc.settings.openai_wait_s:g}"
                    f" s (job {job_id}, {snap.pending} of {snap.total} items not started); the "
                    "service is busy: retry later, or submit large batches to POST /v1/jobs",
                    retry_after_s=self._svc.load.poll_hint(snap) or 1)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX_S)

    @staticmethod
    def _answer(snap: JobStatusSnapshot, items: list[ResultItem],
                fmt: str) -> EmbeddingsResponse:
        failed = [it for it in items if it.status != ItemStatus.SUCCEEDED or it.output is None]
        if failed:
            raise _item_failure(snap, failed[0])
        data = [Embedding(index=it.index, embedding=encode_vector(it.output.embedding, fmt))
                for it in items]  # type: ignore[union-attr]  # all succeeded, checked above
        tokens = sum(it.output.num_tokens for it in items)  # type: ignore[union-attr]
        return EmbeddingsResponse(data=data, model=f"{snap.model}@{snap.version}",
                                  usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def _item_failure(snap: JobStatusSnapshot, item: ResultItem) -> E.ApiError:
    """The request's error when an item failed: the input's fault is a 400 naming it; a
    deadline is the timeout; anything else is the service's, retryable."""
    code = item.error.code if item.error else ErrorCode.INTERNAL_ERROR
    message = item.error.message if item.error else "no result"
    if code in INPUT_ERRORS:
        return E.InvalidRequest(f"input {item.index}: {message}",
                                errors=[FieldError(f"/input/{item.index}", code)])
    if code == ErrorCode.DEADLINE_EXCEEDED:
        return Timeout(f"the embeddings did not finish in time: {message}", retry_after_s=1)
    return E.Unavailable(f"job {snap.job_id} failed ({code}): {message}; retry shortly",
                         retry_after_s=1)
