"""The caller's W3C trace travels from the gateway through NATS to the runner: on the job's
chunks (header and body) and on every batch that serves the job."""

from __future__ import annotations

import nats

from core.tracing import TraceParent
from schemas.bus import BATCH_DECODER, CHUNK_DECODER
from tests.e2e.harness import wait_terminal

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_jobs_trace_reaches_its_chunks_and_batches(service, nats_url) -> None:
    nc = await nats.connect(nats_url)
    chunks, batches = [], []

    async def on_chunk(msg) -> None:
        chunks.append((msg.headers or {}, CHUNK_DECODER.decode(msg.data)))

    async def on_batch(msg) -> None:
        batches.append((msg.headers or {}, BATCH_DECODER.decode(msg.data)))

    await nc.subscribe("inferq.jobs.>", cb=on_chunk)  # core subscribers see every publish
    await nc.subscribe("inferq.batches.>", cb=on_batch)
    await nc.flush()
    try:
        async with service.client("alpha") as a:
            r = await a.post("/v1/jobs", headers={
                "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, json={
                "model": "minilm", "inputs": [{"text": f"traced {i}"} for i in range(300)]
                + [{"text": ""}]})  # one item fails before inference: its batch too
            job = r.json()["job_id"]
            done = await wait_terminal(a, job)
        await nc.flush()
    finally:
        await nc.close()
    assert done["counts"]["succeeded"] == 300 and done["counts"]["failed"] == 1
    assert TraceParent.parse(r.headers["traceparent"]).trace_id == TRACE
    assert len(chunks) == 2  # 256 + 45 items
    for headers, chunk in chunks:
        assert TraceParent.parse(headers["traceparent"]).trace_id == TRACE
        assert chunk.traceparent == headers["traceparent"]
    ours = [(h, b) for h, b in batches if job in {i.job_id for i in b.items}
            | {f.job_id for f in b.failed}]
    assert ours and any(b.failed for _, b in ours)
    for headers, batch in ours:
        hop = TraceParent.parse(batch.traces[job])
        assert hop.trace_id == TRACE
        assert hop.parent_id not in {TraceParent.parse(h["traceparent"]).parent_id
                                     for h, _ in chunks}  # the scheduler's own span
        assert TraceParent.parse(headers["traceparent"]).trace_id == TRACE
