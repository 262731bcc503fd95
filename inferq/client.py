"""A small asynchronous client for the inferq API (httpx).

It retries only what the server marks retryable (``retryable: true`` in the error envelope:
409 in progress, 429 rate limited / over quota, 503 overloaded / unavailable) plus transport
failures and gateway-less 502/504, with exponential backoff and full jitter, never sooner
than the server's ``Retry-After``. A submission always carries an Idempotency-Key (one is
made up if none is given) and every retry resends the same key, so a retry can never create
a second job.

    async with Client("http://127.0.0.1:8000", api_key) as c:
        job = await c.submit(["hello", "world"], model="minilm")
        done = await c.wait(job["job_id"])
        async for item in c.results(job["job_id"]):
            ...
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.webhook_signature import InvalidSignature
from core.webhook_signature import verify as verify_webhook
from schemas.states import TERMINAL_JOB

__all__ = ["Client", "InferqError", "InvalidSignature", "RetryPolicy", "retry_after",
           "verify_webhook"]
"""``verify_webhook(secret, headers, body)`` raises ``InvalidSignature`` unless a webhook
request is signed with the tenant's secret and recent (Standard Webhooks)."""


class InferqError(Exception):
    """An error answer (the problem+json envelope when there is one) or a transport failure
    that outlasted the retries."""

    def __init__(self, status: int, code: str, detail: str, *, retryable: bool = False,
                 problem: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.problem = problem or {}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2ⁿ)),
    but never less than the server's Retry-After."""

    max_attempts: int = 10
    base_s: float = 0.5
    max_backoff_s: float = 30.0
    max_elapsed_s: float = 600.0
    """Give up once this much time has passed since the first attempt."""

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry ``attempt`` (0-based)."""
        backoff = rng.uniform(0.0, min(self.max_backoff_s, self.base_s * 2 ** attempt))
        return max(backoff, retry_after_s or 0.0)


def retry_after(response: httpx.Response, problem: dict[str, Any] | None = None) -> float | None:
    """Seconds the server asks us to wait: the envelope's ``retry_after_s`` (sub-second) or
    the ``Retry-After`` header (delta seconds or an HTTP date)."""
    if problem and isinstance(problem.get("retry_after_s"), int | float):
        return max(0.0, float(problem["retry_after_s"]))
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "code" in body else None


class Client:
    """The API over one keep-alive connection pool: retries what the server marks retryable,
    resends one Idempotency-Key per submission, and polls with conditional GETs."""

    def __init__(self, base_url: str, api_key: str, *, retry: RetryPolicy | None = None,
                 timeout_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None):
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                       transport=transport,
                                       headers={"Authorization": f"Bearer {api_key}"})
        self.retry_policy = retry or RetryPolicy()
        """How failed requests are retried (``retry`` is the API call of that name)."""
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._etags: dict[str, tuple[str, dict[str, Any]]] = {}
        self.attempts = 0
        """Requests sent, retries included (for tests and logs)."""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # The API

    async def submit(self, inputs: list[str | dict[str, Any]], *, model: str,
                     priority: str | None = None, timeout_s: float | None = None,
                     metadata: dict[str, Any] | None = None,
                     idempotency_key: str | None = None,
                     webhook: str | dict[str, Any] | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        """Submit a job; returns its status document. Retried with one Idempotency-Key.

        ``webhook``: a URL, or ``{"url": ..., "events": ["job.succeeded", "job.failed"]}``,
        told of the job's end (verify it with :func:`inferq.client.verify_webhook`).
        ``dry_run``: only check, tokenize and estimate; returns the dry-run report."""
        body: dict[str, Any] = {"model": model, "inputs": [
            {"text": x} if isinstance(x, str) else x for x in inputs]}
        if isinstance(webhook, str):
            webhook = {"url": webhook}
        for name, value in (("priority", priority), ("timeout_s", timeout_s),
                            ("metadata", metadata), ("webhook", webhook)):
            if value is not None:
                body[name] = value
        if dry_run:
            r = await self.request("POST", "/v1/jobs", json=body, params={"dry_run": "true"})
            return r.json()
        key = idempotency_key or uuid.uuid4().hex
        r = await self.request("POST", "/v1/jobs", json=body,
                               headers={"Idempotency-Key": key})
        return r.json()

    async def webhook_deliveries(self, job_id: str) -> dict[str, Any]:
        """The job's webhook: its state and every delivery attempt."""
        return (await self.request("GET", f"/v1/jobs/{job_id}/webhook-deliveries")).json()

    async def usage(self, start: str | None = None, end: str | None = None,
                    group_by: str = "day") -> dict[str, Any]:
        """The tenant's usage from ``start`` to ``end`` (RFC 3339 dates; default the last 7
        UTC days) by ``day`` or ``model``: jobs, items, input tokens, inference seconds."""
        params = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        return (await self.request("GET", "/v1/usage",
                                   params={**params, "group_by": group_by})).json()

    async def status(self, job_id: str) -> dict[str, Any]:
        """The status document; a conditional GET, so an unchanged job costs a 304."""
        doc, _ = await self._status(job_id)
        return doc

    async def wait(self, job_id: str, *, timeout_s: float | None = None,
                   min_interval_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job is terminal, as often as the server's Retry-After hint says."""
        start = time.monotonic()
        while True:
            doc, hint = await self._status(job_id)
            if doc["status"] in TERMINAL_JOB:
                return doc
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise TimeoutError(f"job {job_id} not terminal after {timeout_s}s")
            await self._sleep(max(min_interval_s, hint if hint is not None else 1.0))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel the job; returns its status document (idempotent)."""
        return (await self.request("POST", f"/v1/jobs/{job_id}/cancel")).json()

    async def results(self, job_id: str, *, status: str | None = None,
                      page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every item result (or only ``succeeded`` / ``failed`` ones), page by page."""
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = (await self.request("GET", f"/v1/jobs/{job_id}/results",
                                       params=params)).json()
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def jsonl(self, job_id: str) -> AsyncIterator[bytes]:
        """The consolidated artifact, line by line (streamed, never held in memory).

        Opening the stream is retried like any request; a stream cut midway raises."""
        attempt, started = 0, False
        while True:
            self.attempts += 1
            wait: float | None = None
            try:
                async with self._http.stream("GET", f"/v1/jobs/{job_id}/results.jsonl") as r:
                    if r.status_code == 200:
                        async for line in r.aiter_lines():
                            if line:
                                started = True
                                yield line.encode()
                        return
                    await r.aread()
                    err = self._error(r)
                    wait = retry_after(r, err.problem)
            except httpx.TransportError as exc:
                if started:
                    raise
                err = InferqError(0, "transport_error", repr(exc), retryable=True)
            attempt += 1
            if not err.retryable or attempt >= self.retry_policy.max_attempts:
                raise err
            await self._sleep(self.retry_policy.delay(attempt - 1, wait, self._rng))

    async def jobs(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """The tenant's jobs, newest first."""
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = (await self.request("GET", "/v1/jobs", params=params)).json()
            for job in page["jobs"]:
                yield job
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def upload_file(self, path: str | Path) -> dict[str, Any]:
        """Upload a JSONL file (streamed from disk) for ``submit_file_job``; its description
        (``file_id``, ``lines``, ``bytes``, ``sha256``). Not retried: a retry resends it."""

        async def body() -> AsyncIterator[bytes]:
            with open(path, "rb") as fh:  # noqa: ASYNC230 - 1 MiB reads, between sends
                while piece := fh.read(1 << 20):
                    yield piece

        r = await self._http.post("/v1/files", content=body(),
                                  headers={"Content-Type": "application/x-ndjson"})
        self.attempts += 1
        if r.status_code != 201:
            raise self._error(r)
        return r.json()

    async def submit_file_job(self, file_id: str, *, model: str, priority: str | None = None,
                              timeout_s: float | None = None,
                              idempotency_key: str | None = None) -> dict[str, Any]:
        """A job of an uploaded file's lines (up to 1,000,000); retried with one key."""
        body: dict[str, Any] = {"model": model, "input_file_id": file_id}
        if priority:
            body["priority"] = priority
        if timeout_s:
            body["timeout_s"] = timeout_s
        key = idempotency_key or str(uuid.uuid4())
        return (await self.request("POST", "/v1/jobs", json=body,
                                   headers={"Idempotency-Key": key})).json()

    async def download_results(self, job_id: str, dest: str | Path) -> dict[str, Any]:
        """Download a terminal job's ``results.jsonl`` to ``dest``, resuming a partial
        ``<dest>.part`` and checking the SHA-256 (:func:`inferq.download.download_results`);
        returns the manifest."""
        from inferq.download import download_results  # it uses this module's InferqError

        return await download_results(self, job_id, dest)

    async def retry(self, job_id: str, *, all_failed: bool = False,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """A new job of a terminal job's items that failed with ``retryable: true`` (every
        failed one with ``all_failed``); its status document (``parent_job_id``). Its results
        carry each item's ``parent_index``. Retried with one Idempotency-Key."""
        params = {"all_failed": "true"} if all_failed else {}
        key = idempotency_key or uuid.uuid4().hex
        return (await self.request("POST", f"/v1/jobs/{job_id}/retry", params=params,
                                   headers={"Idempotency-Key": key})).json()

    # Transport with retries

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send; retry retryable failures; return a 2xx/304 response or raise InferqError."""
        start = time.monotonic()
        attempt = 0
        while True:
            self.attempts += 1
            wait: float | None = None
            try:
                r = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                err = InferqError(0, "transport_error", repr(exc), retryable=True)
            else:
                if r.status_code < 400:
                    return r
                err = self._error(r)
                wait = retry_after(r, err.problem)
            attempt += 1
            out_of_time = time.monotonic() - start > self.retry_policy.max_elapsed_s
            if not err.retryable or attempt >= self.retry_policy.max_attempts or out_of_time:
                raise err
            await self._sleep(self.retry_policy.delay(attempt - 1, wait, self._rng))

    @staticmethod
    def _error(r: httpx.Response) -> InferqError:
        problem = _problem(r)
        if problem is not None:
            return InferqError(r.status_code, str(problem["code"]),
                               str(problem.get("detail", "")),
                               retryable=bool(problem.get("retryable")), problem=problem)
        # No envelope: a proxy or load balancer answered. Only its "try again" codes retry.
        return InferqError(r.status_code, f"http_{r.status_code}", r.text[:200],
                           retryable=r.status_code in (502, 503, 504))

    async def _status(self, job_id: str) -> tuple[dict[str, Any], float | None]:
        cached = self._etags.get(job_id)
        headers = {"If-None-Match": cached[0]} if cached else {}
        r = await self.request("GET", f"/v1/jobs/{job_id}", headers=headers)
        if r.status_code == 304 and cached:
            doc = cached[1]
        else:
            doc = r.json()
            if etag := r.headers.get("etag"):
                self._etags[job_id] = (etag, doc)
        return doc, retry_after(r)
