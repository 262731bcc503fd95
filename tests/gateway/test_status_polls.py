"""Status polls answered before Litestar's router (gateway/polls.py) answer exactly as the
Litestar route does: two gateways on the same Redis and NATS, one with the fast path and one
without, are asked the same questions and must give the same answers."""

from __future__ import annotations

import contextlib
import json

import httpx

from gateway.polls import STATUS_ROUTE, StatusPolls
from inferq.embedded import free_port
from tests.e2e.harness import KEYS
from tests.gateway.support import assert_problem, running, tenants_with

JOB = {"model": "minilm", "inputs": [{"text": "poll me", "id": "a"}]}
VOLATILE = {"date", "x-request-id", "traceparent", "ratelimit-remaining", "ratelimit-reset",
            "ratelimit", "retry-after", "content-length"}
"""Headers whose values differ from request to request (their presence must still match; a
problem document's length moves with its ``retry_after_s``, and bodies are compared)."""


def same_answer(fast: httpx.Response, slow: httpx.Response, rid: str | None = None) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert set(fast.headers) == set(slow.headers), (fast.headers, slow.headers)
    for name in set(fast.headers) - VOLATILE:
        assert fast.headers[name] == slow.headers[name], name
    if fast.content or slow.content:
        a, b = fast.json(), slow.json()
        if "request_id" in a:  # problem documents: the request's own id
            assert a.pop("request_id") == fast.headers["x-request-id"]
            b.pop("request_id")
            assert abs(a.pop("retry_after_s", 0) - b.pop("retry_after_s", 0)) < 1.0  # a wait
        assert a == b
    if rid is not None:
        assert fast.headers["x-request-id"] == rid


@contextlib.asynccontextmanager
async def two_gateways(settings, **overrides):
    async with (running(settings, **overrides) as fast,
                running(settings, http_port=free_port(), fast_status_polls=False,
                        **overrides) as slow):
        assert isinstance(fast.gateway._server.config.app.asgi_handler, StatusPolls)
        assert not isinstance(slow.gateway._server.config.app.asgi_handler, StatusPolls)
        yield fast, slow


async def test_every_poll_answer_is_the_same_with_and_without_the_fast_path(settings) -> None:
    async with two_gateways(settings) as (fast, slow), \
            fast.client("alpha") as fa, slow.client("alpha") as sa, \
            fast.client("beta") as fb, slow.client("beta") as sb:
        job = (await fa.post("/v1/jobs", json=JOB)).json()
        path = f"/v1/jobs/{job['job_id']}"
        etag = (await fa.get(path)).headers["etag"]
        cases = [
            (fa, sa, path, {}),                                    # 200, queued: Retry-After
            (fa, sa, path, {"If-None-Match": etag}),               # 304
            (fa, sa, path, {"If-None-Match": f'W/{etag}, "x"'}),   # 304, weak and listed
            (fa, sa, path, {"If-None-Match": '"stale"'}),          # 200 after a conditional
            (fa, sa, path + "?unused=1", {}),                      # query strings ignored
            (fa, sa, "/v1/jobs/no-such-job", {}),                  # 404
            (fb, sb, path, {}),                                    # 404: another tenant's
            (fa, sa, path, {"Authorization": "Bearer wrong"}),     # 401
            (fa, sa, path, {"Authorization": "Basic x"}),          # 401
            (fa, sa, path, {"X-Request-Id": "mine-123"}),          # the caller's request id
        ]
        for f, s, p, headers in cases:
            same_answer(await f.get(p, headers=headers), await s.get(p, headers=headers),
                        headers.get("X-Request-Id"))
        trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        answer = await fa.get(path, headers={"traceparent": trace})
        assert answer.headers["traceparent"].split("-")[1] == trace.split("-")[1]
        await fa.post(f"{path}/cancel")  # terminal: no Retry-After on either path
        same_answer(await fa.get(path), await sa.get(path))
        assert "retry-after" not in (await fa.get(path)).headers


async def test_a_rate_limited_poll_is_the_same_429_on_both_paths(settings, tmp_path) -> None:
    tight = tenants_with(tmp_path / "t.toml", alpha={"polls_per_s": 1.0})
    async with two_gateways(settings, tenants_file=tight) as (fast, slow), \
            fast.client("alpha") as fa, slow.client("alpha") as sa:
        path = f"/v1/jobs/{(await fa.post('/v1/jobs', json=JOB)).json()['job_id']}"

        async def refused(c: httpx.AsyncClient) -> httpx.Response:
            for _ in range(50):
                if (r := await c.get(path)).status_code == 429:
                    return r
            raise AssertionError("never rate limited")

        f, s = await refused(fa), await refused(sa)
        assert_problem(f, 429, "rate_limited")
        same_answer(f, s)


async def test_polls_on_the_fast_path_skip_litestar_and_are_still_observed(
        settings, monkeypatch) -> None:
    from core import metrics
    answered = []
    real = StatusPolls._poll

    async def counting(self, *args):
        answered.append(args[2])
        await real(self, *args)

    monkeypatch.setattr(StatusPolls, "_poll", counting)
    async with running(settings) as svc, svc.client("alpha") as c:
        job_id = (await c.post("/v1/jobs", json=JOB)).json()["job_id"]
        before = metrics.HTTP_LATENCY.labels("GET", STATUS_ROUTE, "200")._sum.get()
        assert (await c.get(f"/v1/jobs/{job_id}")).status_code == 200
        assert (await c.head(f"/v1/jobs/{job_id}")).status_code == 200  # HEAD: Litestar's
        assert (await c.get(f"/v1/jobs/{job_id}/results")).status_code == 200
        assert answered == [job_id]
        assert metrics.HTTP_LATENCY.labels("GET", STATUS_ROUTE, "200")._sum.get() > before
        body = json.loads((await c.get(f"/v1/jobs/{job_id}")).content)
        assert body["job_id"] == job_id and KEYS["alpha"] not in json.dumps(body)
