"""The OpenAI Batch API through the official ``openai`` package, sync and async, against the
real stack under ``/openai/v1``: a batch from upload to downloaded output (every ``custom_id``
exactly once, a list ``input`` one response with its vectors in order, the same bytes on every
download), a partly failing batch and its error file, cancel, refusals naming the bad line, 401
and 404 as the client's exception classes, and a 429 that the client retries by itself. The
sync client runs in a worker thread: the service runs in the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time

import httpx
import numpy as np
import openai
import pytest

from tests.e2e.harness import KEYS, all_results
from tests.gateway.support import running, tenants_with


def line(custom_id: str, input: str | list[str], **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "minilm", "input": input, **body}}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def async_client(url: str, key: str = KEYS["alpha"], **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/openai/v1", api_key=key, **kw)


def sync_client(url: str, key: str = KEYS["alpha"], **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, **kw)


async def until_ended(client: openai.AsyncOpenAI, batch_id: str, within: float = 120):
    deadline = time.monotonic() + within
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.2)


def by_custom_id(content: bytes) -> dict[str, dict]:
    lines = [json.loads(x) for x in content.splitlines()]
    out = {x["custom_id"]: x for x in lines}
    assert len(out) == len(lines), "a custom_id twice"
    return out


@pytest.fixture
def sim(settings):
    return dataclasses.replace(settings, backend="simulated", tokenizer_parallel=False)


async def test_a_batch_from_upload_to_downloaded_output(sim) -> None:
    # 300 requests, 360 texts: more than one page of results, lists among single texts.
    lines = [line(f"r{i}", [f"text {i}.{k}" for k in range(3)] if i % 10 == 0 else f"text {i}")
             for i in range(300)]
    lines[7]["body"]["encoding_format"] = "base64"
    body = jsonl(lines)
    async with running(sim, runners=1, schedulers=1) as svc, async_client(svc.url) as client:
        f = await client.files.create(file=("requests.jsonl", body), purpose="batch")
        assert (f.object, f.purpose, f.filename, f.bytes) == ("file", "batch", "requests.jsonl",
                                                              len(body))
        assert (await client.files.retrieve(f.id)).model_dump() == f.model_dump()
        assert (await client.files.content(f.id)).content == body

        key = {"Idempotency-Key": "batch-e2e-1"}
        batch = await client.batches.create(
            input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h",
            metadata={"run": "e2e"}, extra_headers=key)
        assert (batch.object, batch.endpoint, batch.input_file_id) == (
            "batch", "/v1/embeddings", f.id)
        assert batch.status == "in_progress" and batch.metadata == {"run": "e2e"}
        assert batch.request_counts.total == 300 and batch.expires_at == batch.created_at + 86400
        again = await client.batches.with_raw_response.create(
            input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h",
            metadata={"run": "e2e"}, extra_headers=key)
        assert again.parse().id == batch.id and again.headers["idempotency-replayed"] == "true"

        done = await until_ended(client, batch.id)
        assert done.status == "completed" and done.completed_at >= done.created_at
        assert done.request_counts.model_dump() == {"total": 300, "completed": 300, "failed": 0}
        assert done.error_file_id is None and done.output_file_id
        out = (await client.files.content(done.output_file_id)).content
        assert (await client.files.content(done.output_file_id)).content == out  # byte-stable
        meta = await client.files.retrieve(done.output_file_id)
        assert (meta.purpose, meta.bytes) == ("batch_output", len(out))

        got = by_custom_id(out)
        assert list(got) == [x["custom_id"] for x in lines]
        assert all(x["error"] is None and x["response"]["status_code"] == 200
                   for x in got.values())
        assert len({x["id"] for x in got.values()}) == 300
        listed = got["r10"]["response"]["body"]
        assert [d["index"] for d in listed["data"]] == [0, 1, 2]
        assert listed["model"] == "minilm@1" and listed["usage"]["prompt_tokens"] > 3
        # Each vector is the one the embeddings endpoint gives the same text.
        direct = await client.embeddings.create(model="minilm", input=lines[10]["body"]["input"],
                                                encoding_format="float")
        assert np.allclose([d["embedding"] for d in listed["data"]],
                           [d.embedding for d in direct.data], atol=1e-6)
        b64 = got["r7"]["response"]["body"]["data"][0]["embedding"]
        assert isinstance(b64, str) and len(np.frombuffer(base64.b64decode(b64), "<f4")) == 384

        assert [b.id for b in (await client.batches.list()).data] == [batch.id]

        # The batch is its native job: the results API serves it too, by custom_id.
        async with svc.client() as c:
            items = await all_results(c, batch.id.removeprefix("batch_"))
        assert len(items) == 360 and [i["id"] for i in items[:4]] == ["r0", "r0", "r0", "r1"]


async def test_a_partly_failing_batch_puts_its_failed_requests_in_the_error_file(sim) -> None:
    lines = [line("ok-1", "hello"), line("blank", "   "),
             line("mixed", ["fine", "\u200b"]), line("ok-2", ["a", "b"])]
    async with running(sim, runners=1, schedulers=1) as svc:

        def run() -> tuple:
            with sync_client(svc.url) as client:
                f = client.files.create(file=("mixed.jsonl", jsonl(lines)), purpose="batch")
                batch = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                              completion_window="24h")
                while batch.status == "in_progress":
                    time.sleep(0.2)
                    batch = client.batches.retrieve(batch.id)
                return (batch, client.files.content(batch.output_file_id).content,
                        client.files.content(batch.error_file_id).content,
                        client.files.retrieve(batch.error_file_id))

        batch, out, err, err_meta = await asyncio.to_thread(run)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert set(by_custom_id(out)) == {"ok-1", "ok-2"}
    errors = by_custom_id(err)
    assert list(errors) == ["blank", "mixed"] and err_meta.bytes == len(err)
    for custom_id, param in (("blank", "input"), ("mixed", "input[1]")):
        x = errors[custom_id]
        assert x["error"] is None and x["response"]["status_code"] == 400
        error = x["response"]["body"]["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", "empty_text", param)


async def test_cancel_refusals_not_found_and_a_batch_larger_than_openais(sim) -> None:
    # No scheduler: the batch queues and never runs until it is cancelled.
    async with running(sim, runners=0, schedulers=0) as svc, async_client(svc.url) as client:
        lines = [line(f"c{i}", ["x", "y"] if i == 1 else "x") for i in range(3)]
        f = await client.files.create(file=("c.jsonl", jsonl(lines)), purpose="batch")
        batch = await client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                            completion_window="24h")
        cancelled = await client.batches.cancel(batch.id)
        assert cancelled.status == "cancelled" and cancelled.cancelled_at
        assert cancelled.request_counts.model_dump() == {"total": 3, "completed": 0,
                                                         "failed": 3}
        assert cancelled.output_file_id is None
        errors = by_custom_id((await client.files.content(cancelled.error_file_id)).content)
        assert list(errors) == ["c0", "c1", "c2"]
        assert {(x["response"], x["error"]["code"]) for x in errors.values()} == {
            (None, "batch_cancelled")}
        assert (await client.batches.cancel(batch.id)).status == "cancelled"  # idempotent

        # Listing pages newest first, with the client's own `after` cursor.
        second = await client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                             completion_window="24h")
        page = await client.batches.list(limit=1)
        assert [b.id for b in page.data] == [second.id] and page.has_more
        assert [b.id async for b in client.batches.list(limit=1)] == [second.id, batch.id]

        async def refusal(call) -> openai.APIStatusError:
            with pytest.raises(openai.APIStatusError) as info:
                await call
            return info.value

        bad = await refusal(client.files.create(file=("b.jsonl", jsonl(lines[:1]) + b"{nope\n"),
                                                purpose="batch"))
        assert isinstance(bad, openai.BadRequestError) and bad.body["message"].startswith("line 2")
        dup = await refusal(client.files.create(file=("d.jsonl", jsonl(lines + lines[:1])),
                                                purpose="batch"))
        assert "line 4" in dup.message and "line 1" in dup.message
        chat = dict(lines[0], url="/v1/chat/completions")
        assert (await refusal(client.files.create(file=("u.jsonl", jsonl([chat])),
                                                  purpose="batch"))).code == \
            "unsupported_parameter"
        assert (await refusal(client.files.create(file=("p.jsonl", jsonl(lines)),
                                                  purpose="fine-tune"))).param == "purpose"
        endpoint = await refusal(client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"))
        assert (endpoint.code, endpoint.param) == ("unsupported_parameter", "endpoint")

        missing = await refusal(client.batches.retrieve("batch_" + "0" * 32))
        assert isinstance(missing, openai.NotFoundError) and missing.code == "batch_not_found"
        assert isinstance(await refusal(client.files.retrieve("file-nope")),
                          openai.NotFoundError)
        for call in (client.files.list(), client.files.delete(f.id)):
            assert (await refusal(call)).code == "not_offered"
        async with async_client(svc.url, key=KEYS["beta"]) as other:  # another tenant's
            assert isinstance(await refusal(other.batches.retrieve(batch.id)),
                              openai.NotFoundError)
            assert isinstance(await refusal(other.files.content(f.id)), openai.NotFoundError)
        async with async_client(svc.url, key="sk-not-a-key") as anon:
            unauth = await refusal(anon.batches.list())
            assert isinstance(unauth, openai.AuthenticationError)
            assert unauth.code == "invalid_api_key"

        # More requests than OpenAI takes in a batch (50,000).
        big = await client.files.create(
            file=("big.jsonl", jsonl([line(f"b{i}", "x") for i in range(50_001)])),
            purpose="batch")
        batch = await client.batches.create(input_file_id=big.id, endpoint="/v1/embeddings",
                                            completion_window="24h")
        assert batch.request_counts.total == 50_001


async def test_the_client_retries_a_429_after_the_servers_retry_after(sim, tmp_path) -> None:
    # One poll a second, a burst of one: the second read is refused once, then admitted.
    tenants = tenants_with(tmp_path / "t.toml", alpha={"polls_per_s": 1.0})
    async with running(sim, tenants_file=tenants, rate_burst_s=1.0) as svc:
        async with async_client(svc.url) as client:
            f = await client.files.create(file=("r.jsonl", jsonl([line("a", "x")])),
                                          purpose="batch")
            batch = await client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                                completion_window="24h")
        async with httpx.AsyncClient(base_url=svc.url, headers={
                "Authorization": f"Bearer {KEYS['alpha']}"}) as http:
            await http.get(f"/openai/v1/batches/{batch.id}")
            r = await http.get(f"/openai/v1/batches/{batch.id}")
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(r.headers["retry-after-ms"]) > 0
        async with async_client(svc.url, max_retries=3) as client:
            t0 = time.monotonic()
            raw = await client.batches.with_raw_response.retrieve(batch.id)
            assert raw.retries_taken >= 1 and raw.parse().id == batch.id
            assert time.monotonic() - t0 >= 0.5
