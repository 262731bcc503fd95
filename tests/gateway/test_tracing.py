"""The gateway continues the caller's W3C trace and echoes the request id, on answers and on
errors alike. (Parsing the header is core.tracing's: tests/core/test_tracing.py.)"""

from __future__ import annotations

from core.tracing import TraceParent
from tests.e2e.harness import KEYS
from tests.gateway.support import running

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE}-00f067aa0ba902b7-01"


async def test_the_gateway_continues_the_callers_trace_and_echoes_the_request_id(
        settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        r = await c.get("/healthz", headers={"traceparent": INCOMING, "X-Request-Id": "req-1"})
        fresh = await c.get("/healthz", headers={"traceparent": "bogus"})
        problem = await c.get("/v1/jobs/nope", headers={
            "traceparent": INCOMING, "Authorization": f"Bearer {KEYS['alpha']}"})
    ours = TraceParent.parse(r.headers["traceparent"])
    assert ours is not None and ours.trace_id == TRACE and ours.parent_id != "00f067aa0ba902b7"
    assert r.headers["x-request-id"] == "req-1"
    assert TraceParent.parse(fresh.headers["traceparent"]).trace_id != TRACE
    assert len(fresh.headers["x-request-id"]) == 32  # one made up
    # Error responses carry both, and the envelope's request_id is the header's.
    assert problem.status_code == 404
    assert TraceParent.parse(problem.headers["traceparent"]).trace_id == TRACE
    assert problem.json()["request_id"] == problem.headers["x-request-id"]
    assert problem.headers.get_list("x-request-id") == [problem.headers["x-request-id"]]
