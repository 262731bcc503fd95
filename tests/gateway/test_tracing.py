"""W3C trace context: parsed strictly, continued by the gateway, echoed with the request id,
and bound into the JSON log lines a request causes."""

from __future__ import annotations

import json
import logging

import pytest

from core.logs import JsonFormatter
from core.tracing import TraceParent, bound, continue_or_start
from tests.e2e.harness import KEYS
from tests.gateway.support import running

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", [
    INCOMING,
    f"01-{TRACE}-00f067aa0ba902b7-01-future-field",  # later versions may append fields
])
def test_valid_traceparents_parse(value) -> None:
    parsed = TraceParent.parse(value)
    assert parsed is not None and parsed.trace_id == TRACE


@pytest.mark.parametrize("value", [
    None, "", "garbage", INCOMING.upper(), INCOMING + "-extra",  # 00 is exactly 55 chars
    f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
])
def test_invalid_traceparents_are_ignored(value) -> None:
    assert TraceParent.parse(value) is None


def test_a_hop_keeps_the_trace_and_takes_a_new_span() -> None:
    child = continue_or_start(INCOMING)
    assert child.trace_id == TRACE and child.parent_id != "00f067aa0ba902b7"
    assert TraceParent.parse(child.header()) == child
    fresh = continue_or_start("not a traceparent")
    assert fresh.trace_id != TRACE and TraceParent.parse(fresh.header()) == fresh


def test_log_lines_carry_the_bound_fields_and_explicit_ones_win() -> None:
    fmt = JsonFormatter()
    rec = logging.LogRecord("inferq.x", logging.INFO, __file__, 1, "hello", None, None)
    with bound(request_id="r1", trace_id=TRACE, job_id="j1"):
        doc = json.loads(fmt.format(rec))
        rec.job_id = "j2"
        explicit = json.loads(fmt.format(rec))
    after = json.loads(fmt.format(logging.LogRecord("inferq.x", logging.INFO, __file__, 1,
                                                    "bye", None, None)))
    assert (doc["request_id"], doc["trace_id"], doc["job_id"]) == ("r1", TRACE, "j1")
    assert explicit["job_id"] == "j2"
    assert "request_id" not in after and "trace_id" not in after


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
