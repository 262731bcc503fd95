"""The Python client's retry policy, against a scripted transport and a fake clock: only
retryable errors are retried, never sooner than Retry-After, with jittered exponential
backoff, and a submission always resends the same Idempotency-Key."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from inferq.client import Client, InferqError, RetryPolicy, retry_after

DOC = {"job_id": "j1", "status": "queued", "counts": {"total": 1}}


def problem(status: int, code: str, retryable: bool, retry_after_s: float | None = None,
            header: str | None = None) -> httpx.Response:
    body = {"type": f"https://inferq.dev/errors/{code}", "title": code, "status": status,
            "detail": code, "code": code, "retryable": retryable, "request_id": "r"}
    headers = {"content-type": "application/problem+json"}
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
    if header is not None:
        headers["retry-after"] = header
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


class Script:
    """Answers requests in order and records them; a fake sleep records the waits."""

    def __init__(self, *answers: httpx.Response | Exception):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, s: float) -> None:
        self.slept.append(s)

    def client(self, **kw) -> Client:
        return Client("http://test", "key", transport=httpx.MockTransport(self.handler),
                      sleep=self.sleep, rng=random.Random(7), **kw)


async def test_retryable_answers_are_retried_with_the_same_idempotency_key() -> None:
    s = Script(problem(409, "idempotency_in_progress", True, 1.0),
               problem(429, "rate_limited", True, 0.25, "1"),
               problem(503, "overloaded", True, None, "3"),
               httpx.ConnectError("refused"),
               httpx.Response(202, json=DOC))
    async with s.client() as c:
        assert await c.submit(["a"], model="minilm") == DOC
    keys = {r.headers["idempotency-key"] for r in s.requests}
    assert len(s.requests) == 5 and len(keys) == 1 and keys != {""}
    bodies = {r.content for r in s.requests}
    assert len(bodies) == 1  # the same body every time, so the key never sees another
    # Never sooner than asked: the envelope's retry_after_s, else the header.
    assert s.slept[0] >= 1.0 and s.slept[1] >= 0.25 and s.slept[2] >= 3.0
    assert all(w >= 0 for w in s.slept)


async def test_a_given_idempotency_key_is_used_as_is() -> None:
    s = Script(problem(503, "unavailable", True, 2.0), httpx.Response(202, json=DOC))
    async with s.client() as c:
        await c.submit(["a"], model="minilm", idempotency_key="mine-1")
    assert [r.headers["idempotency-key"] for r in s.requests] == ["mine-1", "mine-1"]


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (401, "unauthenticated"),
                                              (413, "payload_too_large"),
                                              (422, "idempotency_key_reused"),
                                              (500, "internal_error")])
async def test_non_retryable_errors_are_raised_at_once(status: int, code: str) -> None:
    s = Script(problem(status, code, False))
    async with s.client() as c:
        with pytest.raises(InferqError) as e:
            await c.submit(["a"], model="minilm")
    assert (e.value.status, e.value.code, e.value.retryable) == (status, code, False)
    assert len(s.requests) == 1 and s.slept == []


async def test_proxy_errors_without_an_envelope_retry_only_when_they_mean_try_again() -> None:
    s = Script(httpx.Response(502, text="bad gateway"), httpx.Response(504, text="timeout"),
               httpx.Response(200, json=DOC))
    async with s.client() as c:
        assert await c.status("j1") == DOC
    s = Script(httpx.Response(418, text="teapot"))
    async with s.client() as c:
        with pytest.raises(InferqError, match="http_418"):
            await c.status("j1")


async def test_backoff_grows_exponentially_with_full_jitter_and_attempts_are_bounded() -> None:
    s = Script(*[problem(503, "overloaded", True)] * 6)
    policy = RetryPolicy(max_attempts=6, base_s=0.5, max_backoff_s=4.0)
    async with s.client(retry=policy) as c:
        with pytest.raises(InferqError, match="overloaded"):
            await c.cancel("j1")
    assert len(s.requests) == 6 and len(s.slept) == 5
    for attempt, waited in enumerate(s.slept):
        assert 0 <= waited <= min(4.0, 0.5 * 2 ** attempt)
    rng = random.Random(1)
    draws = [policy.delay(3, None, rng) for _ in range(2000)]
    assert 0 <= min(draws) < 0.5 and 3.5 < max(draws) <= 4.0  # full jitter over [0, 4]
    assert policy.delay(0, 9.0, rng) == 9.0  # Retry-After wins over a shorter backoff


async def test_wait_polls_conditionally_and_follows_the_servers_hint() -> None:
    running = {**DOC, "status": "running"}
    done = {**DOC, "status": "succeeded"}
    s = Script(httpx.Response(200, json=running, headers={"etag": '"1"', "retry-after": "3"}),
               httpx.Response(304, headers={"etag": '"1"', "retry-after": "2"}),
               httpx.Response(200, json=done, headers={"etag": '"2"'}))
    async with s.client() as c:
        assert await c.wait("j1") == done
    assert "if-none-match" not in s.requests[0].headers
    assert s.requests[1].headers["if-none-match"] == '"1"'
    assert s.slept == [3.0, 2.0]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(httpx.Response(429, headers={"retry-after": "7"})) == 7.0
    assert retry_after(httpx.Response(429, headers={
        "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after(httpx.Response(429)) is None
    assert retry_after(httpx.Response(429, headers={"retry-after": "soon"})) is None
