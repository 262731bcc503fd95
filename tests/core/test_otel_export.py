"""With ``otlp_endpoint`` set, a job's spans reach an OTLP/HTTP collector from all three roles
in one trace: the caller's span → the gateway's request → its publish → the scheduler's batch
formation per chunk → the runner's inference and write-back. The collector is a real HTTP
server decoding the protobuf an OpenTelemetry collector would receive."""

from __future__ import annotations

import dataclasses

from core import otel
from tests.core.otlp_receiver import OtlpReceiver
from tests.e2e.harness import Service, wait_terminal

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def test_a_jobs_spans_from_every_role_join_one_trace(settings) -> None:
    with OtlpReceiver() as rx:
        svc = Service(dataclasses.replace(settings, otlp_endpoint=rx.endpoint,
                                          otlp_service_prefix="iq"))
        await svc.start()
        try:
            assert otel.active() is not None
            async with svc.client("alpha") as a:
                r = await a.post("/v1/jobs", headers={
                    "traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"}, json={
                    "model": "minilm", "inputs": [{"text": f"traced {i}"} for i in range(300)]})
                assert r.status_code == 202, r.text
                done = await wait_terminal(a, r.json()["job_id"])
        finally:
            await svc.stop()  # the last role out flushes the exporter
        assert otel.active() is None
    assert done["status"] == "succeeded"
    spans = [s for s in rx.spans if s.trace_id == TRACE]
    by_id = {s.span_id: s for s in spans}
    named = {}
    for s in spans:
        named.setdefault((s.service, s.name), []).append(s)

    [request] = named[("iq-gateway", "POST /v1/jobs")]
    assert request.kind == "server" and request.parent_id == CALLER_SPAN
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["http.route"] == "/v1/jobs"
    assert request.span_id == r.headers["traceparent"].split("-")[2]  # what the caller got

    [publish] = named[("iq-gateway", "publish")]
    assert publish.kind == "producer" and publish.parent_id == request.span_id
    assert request.start_ns <= publish.start_ns <= publish.end_ns <= request.end_ns

    formed = named[("iq-scheduler", "form batches")]
    assert len(formed) == 2  # 256 + 44 items: one span per chunk
    assert {s.attributes["inferq.chunk"] for s in formed} == {0, 1}
    assert sum(s.attributes["inferq.items"] for s in formed) == 300
    assert all(s.kind == "consumer" and s.parent_id == publish.span_id for s in formed)

    for stage in ("infer", "write back"):
        runs = named[("iq-runner", stage)]
        assert runs, stage
        for s in runs:
            parent = by_id[s.parent_id]
            assert parent.service == "iq-scheduler" and parent.name == "form batches"
            assert s.start_ns >= parent.start_ns and not s.error
    items_run = sum(s.attributes["inferq.batch_items"] for s in named[("iq-runner", "infer")])
    assert items_run >= 300

    # The polls of wait_terminal came without a traceparent: each is a trace of its own.
    polls = [s for s in rx.spans if s.name == "GET /v1/jobs/{job_id:str}"]
    assert polls and all(s.parent_id is None and s.trace_id != TRACE for s in polls)


async def test_the_sample_ratio_drops_new_traces_but_keeps_a_callers_sampled_one(settings):
    with OtlpReceiver() as rx:
        svc = Service(dataclasses.replace(settings, otlp_endpoint=rx.endpoint,
                                          otlp_sample_ratio=0.0))
        await svc.start()
        try:
            async with svc.client("alpha") as a:
                unsampled = await a.post("/v1/jobs", json={
                    "model": "minilm", "input": {"text": "not traced"}})
                assert unsampled.headers["traceparent"].endswith("-00")
                kept = await a.post("/v1/jobs", headers={
                    "traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
                    json={"model": "minilm", "input": {"text": "traced"}})
                for r in (unsampled, kept):
                    await wait_terminal(a, r.json()["job_id"])
        finally:
            await svc.stop()
    dropped = unsampled.headers["traceparent"].split("-")[1]
    assert not [s for s in rx.spans if s.trace_id == dropped]
    services = {s.service for s in rx.spans if s.trace_id == TRACE}
    assert services == {"inferq-gateway", "inferq-scheduler", "inferq-runner"}
    assert all(s.trace_id == TRACE for s in rx.spans)  # the polls were not sampled either
