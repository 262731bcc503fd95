"""W3C trace context (core.tracing): a ``traceparent`` is parsed strictly, and each hop keeps
the trace with a new span."""

from __future__ import annotations

import pytest

from core.tracing import TraceParent, continue_or_start

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
