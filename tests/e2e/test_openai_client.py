"""The official ``openai`` package, sync and async, against the real stack under
``/openai/v1``: the embeddings equal the native API's for the same texts, base64 decodes to
the floats, errors arrive as the client's own exception classes, and a 429 is retried by the
client itself after the Retry-After the server sent. The sync client runs in a worker thread:
the service runs in the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import numpy as np
import openai
import pytest

from tests.e2e.harness import KEYS, all_results, wait_terminal
from tests.gateway.support import running, tenants_with

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Embeddings, fair share and queues.",
         "a"]


def sync_client(url: str, key: str = KEYS["alpha"], **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, **kw)


def async_client(url: str, key: str = KEYS["alpha"], **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/openai/v1", api_key=key, **kw)


async def native_vectors(svc, texts: list[str]) -> np.ndarray:
    async with svc.client("alpha") as c:
        r = await c.post("/v1/jobs", json={"model": "minilm",
                                           "inputs": [{"text": t} for t in texts]})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert (await wait_terminal(c, job_id))["outcome"] == "all_succeeded"
        return np.array([i["output"]["embedding"] for i in await all_results(c, job_id)])


async def test_embeddings_from_the_official_client_equal_the_native_apis(settings) -> None:
    async with running(settings, runners=1, schedulers=1) as svc:
        native = await native_vectors(svc, TEXTS)
        async with async_client(svc.url) as client:
            one = await client.embeddings.create(model="minilm", input=TEXTS[0],
                                                 encoding_format="float")
            assert one.object == "list" and one.model == "minilm@1"
            assert [(d.object, d.index) for d in one.data] == [("embedding", 0)]
            assert np.allclose(one.data[0].embedding, native[0], atol=1e-5)
            assert one.usage.prompt_tokens == one.usage.total_tokens > 2

            # No encoding_format: the client asks for base64 and decodes it itself.
            many = await client.embeddings.create(model="minilm", input=TEXTS, user="u-1")
            assert [d.index for d in many.data] == [0, 1, 2]
            got = np.array([d.embedding for d in many.data])
            assert got.shape == (3, 384) and np.allclose(got, native, atol=1e-5)
            assert many.usage.prompt_tokens > one.usage.prompt_tokens

            floats = await client.embeddings.create(model="minilm@1", input=TEXTS,
                                                    encoding_format="float")
            raw = await client.embeddings.create(model="minilm@1", input=TEXTS,
                                                 encoding_format="base64")
            for f, b in zip(floats.data, raw.data, strict=True):
                decoded = np.frombuffer(base64.b64decode(b.embedding), dtype="<f4")
                assert np.array_equal(decoded, np.asarray(f.embedding, dtype=np.float32))

        # The sync client, in a thread: the same service, the same answers.
        def sync_calls() -> tuple:
            with sync_client(svc.url) as client:
                emb = client.embeddings.create(model="minilm", input=TEXTS[:2],
                                               encoding_format="float")
                models = [m.id for m in client.models.list()]
                return emb, models, client.models.retrieve("minilm@1")

        emb, models, model = await asyncio.to_thread(sync_calls)
        assert np.allclose([d.embedding for d in emb.data], native[:2], atol=1e-5)
        assert models == ["minilm", "minilm@1"] and model.owned_by == "inferq"


async def test_errors_arrive_as_the_clients_exception_classes(settings) -> None:
    async with running(settings, runners=1, schedulers=1) as svc:

        def calls() -> dict[str, openai.APIStatusError]:
            errors: dict[str, openai.APIStatusError] = {}
            attempts = {
                "bad key": (sync_client(svc.url, key="sk-not-a-key"),
                            dict(model="minilm", input="x")),
                "unknown model": (sync_client(svc.url), dict(model="text-embedding-3-small",
                                                             input="x")),
                "dimensions": (sync_client(svc.url), dict(model="minilm", input="x",
                                                          dimensions=64)),
                "token ids": (sync_client(svc.url), dict(model="minilm", input=[[101, 102]])),
                "empty": (sync_client(svc.url), dict(model="minilm", input=["ok", ""])),
                "unknown option": (sync_client(svc.url), dict(model="minilm", input="x",
                                                              extra_body={"truncate": True})),
            }
            for name, (client, kw) in attempts.items():
                with client, pytest.raises(openai.APIStatusError) as info:
                    client.embeddings.create(**kw)
                errors[name] = info.value
            with sync_client(svc.url) as client:
                for name, call in (("files", lambda: client.files.list()),
                                   ("uploads", lambda: client.uploads.create(
                                       bytes=1, filename="a.jsonl", mime_type="text/jsonl",
                                       purpose="batch")),
                                   ("batches", lambda: client.batches.create(
                                       input_file_id="file-1", endpoint="/v1/embeddings",
                                       completion_window="24h")),
                                   ("chat", lambda: client.chat.completions.create(
                                       model="minilm", messages=[]))):
                    with pytest.raises(openai.APIStatusError) as info:
                        call()
                    errors[name] = info.value
            return errors

        errors = await asyncio.to_thread(calls)
        assert isinstance(errors["bad key"], openai.AuthenticationError)
        assert errors["bad key"].code == "invalid_api_key"
        assert errors["bad key"].type == "authentication_error"
        assert isinstance(errors["unknown model"], openai.NotFoundError)
        assert errors["unknown model"].code == "model_not_found"
        assert errors["unknown model"].param == "model"
        for name in ("dimensions", "token ids", "empty", "unknown option"):
            assert isinstance(errors[name], openai.BadRequestError), name
            assert errors[name].type == "invalid_request_error"
        assert errors["dimensions"].code == "unsupported_parameter"
        assert errors["dimensions"].param == "dimensions"
        assert "384" in errors["dimensions"].message
        assert errors["token ids"].code == "unsupported_parameter"
        assert errors["empty"].param == "input[1]"
        assert "truncate" in errors["unknown option"].message
        # The Batch API is offered (tests/e2e/test_openai_batches.py); listing files and
        # resumable uploads are not, and say so.
        for name, what in (("files", "listing files"), ("uploads", "uploads API")):
            assert isinstance(errors[name], openai.NotFoundError), name
            assert errors[name].code == "not_offered"
            assert what in errors[name].message
        assert isinstance(errors["batches"], openai.NotFoundError)
        assert errors["batches"].code == "file_not_found"
        assert isinstance(errors["chat"], openai.NotFoundError)
        assert errors["chat"].code == "unknown_url"

        # The raw answer: OpenAI's shape, and the native routes keep problem+json.
        async with httpx.AsyncClient(base_url=svc.url) as http:
            r = await http.post("/openai/v1/embeddings", json={"model": "minilm", "input": "x"})
            assert r.status_code == 401 and r.headers["content-type"] == "application/json"
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
            r = await http.get("/openai/v1/embeddings")
            assert r.status_code == 405 and r.headers["allow"] == "OPTIONS, POST"
            assert r.json()["error"]["code"] == "method_not_allowed"
            r = await http.get("/v1/jobs")
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_client_retries_a_429_after_the_servers_retry_after(settings,
                                                                       tmp_path) -> None:
    # One request every 2 s, a burst of one: the second call is refused once, then admitted.
    tenants = tenants_with(tmp_path / "t.toml", alpha={"requests_per_s": 0.5})
    async with running(settings, runners=1, schedulers=1, tenants_file=tenants,
                       rate_burst_s=1.0) as svc:
        async with httpx.AsyncClient(base_url=svc.url, headers={
                "Authorization": f"Bearer {KEYS['alpha']}"}) as http:
            body = {"model": "minilm", "input": "x", "encoding_format": "float"}
            assert (await http.post("/openai/v1/embeddings", json=body)).status_code == 200
            r = await http.post("/openai/v1/embeddings", json=body)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert r.headers["retry-after"] == "2" and 1000 < int(r.headers["retry-after-ms"])
            assert r.headers["ratelimit-remaining"] == "0"
        async with async_client(svc.url, max_retries=3) as client:
            t0 = time.monotonic()
            raw = await client.embeddings.with_raw_response.create(model="minilm", input="y")
            assert raw.retries_taken >= 1  # refused, waited the Retry-After, admitted
            assert time.monotonic() - t0 >= 1.0
            assert len(raw.parse().data[0].embedding) == 384
        async with async_client(svc.url, max_retries=0) as client:
            with pytest.raises(openai.RateLimitError):
                await client.embeddings.create(model="minilm", input="z")


async def test_a_call_that_cannot_finish_in_time_is_a_504_and_no_runner_a_503(settings) -> None:
    # A runner but no scheduler: the job queues and never runs.
    async with running(settings, runners=1, schedulers=0, openai_wait_s=1.0) as svc:
        async with async_client(svc.url, max_retries=0) as client:
            t0 = time.monotonic()
            with pytest.raises(openai.APIStatusError) as info:
                await client.embeddings.create(model="minilm", input="never runs")
            assert info.value.status_code == 504 and info.value.code == "timeout"
            assert 1.0 <= time.monotonic() - t0 < 5.0
            assert int(info.value.response.headers["retry-after"]) >= 1
    async with running(settings, runners=0, schedulers=1) as svc:
        async with async_client(svc.url, max_retries=0) as client:
            with pytest.raises(openai.InternalServerError) as info:
                await client.embeddings.create(model="minilm", input="no runner")
            assert info.value.status_code == 503 and info.value.code == "unavailable"
            assert "no runner serves minilm@1" in info.value.message
