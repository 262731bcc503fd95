"""Span recording (core.tracing) and its OpenTelemetry export (core.otel): off by default at no
cost — the SDK is not even imported — and, once a sink is installed, each hop's span keeps the
ids that travel on the wire and the root's sampling decision."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core import tracing
from core.config import Settings
from core.otel import traces_url
from core.tracing import FinishedSpan, TraceParent, child_spans, record_span, span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RECEIVED = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def sink():
    got: list[FinishedSpan] = []
    tracing.set_span_sink(got.append)
    yield got
    tracing.set_span_sink(None)


def test_nothing_is_recorded_without_a_sink() -> None:
    assert not tracing.exporting()
    assert span("gateway", "x", TraceParent.start(), RECEIVED) is span("r", "y", None, None)
    with child_spans("runner", "infer", [RECEIVED]):
        pass
    record_span("gateway", "x", TraceParent.start(), None, 0)  # no sink: nothing happens


def test_a_span_keeps_its_wire_ids_and_names_the_span_it_continued(sink) -> None:
    ctx = TraceParent.parse(RECEIVED).child()
    with span("gateway", "publish", ctx, RECEIVED, kind="producer", job="j1"):
        pass
    [s] = sink
    assert (s.trace_id, s.span_id, s.parent_id) == (TRACE, ctx.parent_id, "00f067aa0ba902b7")
    assert s.kind == "producer" and s.attributes == {"job": "j1"} and s.end_ns >= s.start_ns
    assert s.service == "gateway" and s.error is None


def test_a_failing_block_is_an_error_span_and_the_error_still_raises(sink) -> None:
    with pytest.raises(KeyError), span("runner", "infer", TraceParent.start(), None):
        raise KeyError("boom")
    assert sink[0].error == "KeyError" and sink[0].parent_id is None


def test_one_batch_serving_two_traces_is_a_child_span_in_each(sink) -> None:
    other = TraceParent.start().header()
    unsampled = f"00-{'1' * 32}-{'2' * 16}-00"
    with child_spans("runner", "infer", [RECEIVED, other, unsampled, "garbage"], batch="b"):
        pass
    assert [(s.trace_id, s.parent_id) for s in sink] == [
        (TRACE, "00f067aa0ba902b7"), (other.split("-")[1], other.split("-")[2])]
    assert len({s.span_id for s in sink}) == 2


def test_the_root_decides_sampling_and_the_trace_carries_it() -> None:
    tracing.set_span_sink(lambda s: None, sample_ratio=0.0)
    try:
        root = TraceParent.start()
        assert not root.sampled and root.header().endswith("-00")
        assert not root.child().sampled  # every later hop keeps the decision
        assert TraceParent.parse(RECEIVED).child().sampled  # a caller's decision is kept
        tracing.set_span_sink(lambda s: None, sample_ratio=0.5)
        kept = sum(TraceParent.start().sampled for _ in range(2000))
        assert 800 < kept < 1200
    finally:
        tracing.set_span_sink(None)
    assert all(TraceParent.start().sampled for _ in range(100))  # nothing exported: all "01"


def test_the_collector_url_gets_the_traces_path_once() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_roles_without_an_endpoint_never_load_the_tracing_sdk() -> None:
    """redis-py 8 imports ``opentelemetry.sdk.metrics`` by itself whenever the SDK is installed
    (its own optional metrics); inferq's span export, the trace SDK and the OTLP exporter, is
    loaded only by ``otel.install`` with an endpoint."""
    code = (
        "import sys\n"
        "from core import otel\n"
        "from core.config import Settings\n"
        "import inferq.roles.gateway, inferq.roles.scheduler, inferq.roles.runner, inferq.dev\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace',\n"
        "                  'opentelemetry.exporter', 'opentelemetry.proto')))\n"
        "assert otel.install(Settings()) is False\n"
        "assert not loaded(), loaded()\n"
        "assert otel.install(Settings(otlp_endpoint='http://127.0.0.1:9'))\n"
        "assert 'opentelemetry.exporter.otlp.proto.http.trace_exporter' in loaded()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert Settings().otlp_endpoint == ""
