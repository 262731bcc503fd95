"""One error envelope on every error path, and the request limits that are checked before
any work (each with its code and a pointer to the field)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import KEYS
from tests.gateway.support import assert_problem, running, services

OK = {"model": "minilm", "input": {"text": "hello"}}


@pytest.fixture
async def svc(settings):
    async with running(settings, max_body_bytes=64 * 1024, max_items_per_job=50,
                       max_text_chars=1000, max_metadata_bytes=256) as s:
        yield s


async def test_routing_and_auth_errors_are_problems(svc) -> None:
    async with svc.client() as c:
        assert_problem(await c.get("/v2/nothing"), 404, "not_found")
        assert_problem(await c.delete("/v1/jobs"), 405, "method_not_allowed")
        assert_problem(await c.put("/v1/jobs/abc"), 405, "method_not_allowed")
        assert_problem(await c.get("/v1/jobs/no-such-job"), 404, "job_not_found")
        assert_problem(await c.post("/v1/jobs/no-such-job/cancel"), 404, "job_not_found")
        assert_problem(await c.get("/v1/jobs/no-such-job/results"), 404, "job_not_found")
        assert_problem(await c.get("/v1/jobs/no-such-job/results.jsonl"), 404, "job_not_found")
    async with svc.client() as c:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"},
                        {"Authorization": f"Basic {KEYS['alpha']}"}):
            for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
                                 ("GET", "/v1/jobs/x"), ("POST", "/v1/jobs/x/cancel")):
                r = await c.request(method, path, headers=headers, content=b"{not json")
                # 401 before the body is even read: authentication is a guard.
                assert_problem(r, 401, "unauthenticated")


async def test_405_says_which_methods_the_resource_has(svc) -> None:
    async with svc.client() as c:
        for method, path, allow in (("DELETE", "/v1/jobs", "GET, HEAD, OPTIONS, POST"),
                                    ("PUT", "/v1/jobs/abc", "GET, HEAD, OPTIONS"),
                                    ("GET", "/v1/jobs/abc/cancel", "OPTIONS, POST"),
                                    ("PATCH", "/healthz", "GET, HEAD, OPTIONS")):
            r = await c.request(method, path)
            assert_problem(r, 405, "method_not_allowed")
            assert sorted(r.headers["allow"].split(", ")) == allow.split(", "), (path, r.headers)
            r = await c.options(path)
            assert r.status_code == 204 and r.headers["allow"] == allow, (path, r.headers)


async def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(svc) -> None:
    async with svc.client() as c:
        job = (await c.post("/v1/jobs", json=OK)).json()["job_id"]
        for path in ("/v1/jobs", f"/v1/jobs/{job}", f"/v1/jobs/{job}/results",
                     f"/v1/jobs/{job}/results.jsonl", "/healthz", "/metrics"):
            get, head = await c.get(path), await c.head(path)
            assert get.status_code == head.status_code == 200, (path, head)
            assert head.content == b"", path
            assert head.headers["content-type"] == get.headers["content-type"], path
        head = await c.head("/v1/jobs/no-such-job")
        assert head.status_code == 404 and head.content == b""
        etag = (await c.get(f"/v1/jobs/{job}")).headers["etag"]
        assert (await c.head(f"/v1/jobs/{job}", headers={"If-None-Match": etag})).status_code == 304


async def test_invalid_bodies_point_at_the_field(svc) -> None:
    async with svc.client() as c:
        body = assert_problem(await c.post("/v1/jobs", content=b"{bad json",
                                           headers={"content-type": "application/json"}),
                              400, "invalid_request")
        assert body["retryable"] is False
        cases = [
            ({"model": "minilm", "inputs": [{"text": "a"}, {"text": 7}]}, "/inputs/1/text"),
            ({"model": "minilm", "inputs": [{"text": "a", "colour": "red"}]}, "/inputs/0/colour"),
            ({"model": "minilm", "input": {"text": "a"}, "priority": "urgent"}, "/priority"),
            ({"model": "minilm", "input": {"text": "a"}, "timeout_s": -1}, "/timeout_s"),
            ({"model": "", "input": {"text": "a"}}, "/model"),
            ({"model": "minilm", "input": {"text": "a", "id": "x" * 300}}, "/input/id"),
            ({"model": "minilm"}, "/inputs"),
            ({"model": "minilm", "inputs": []}, "/inputs"),
            ({"model": "minilm", "inputs": [{"text": "a"}], "input": {"text": "b"}}, "/inputs"),
            ([1, 2], ""),
        ]
        for payload, pointer in cases:
            body = assert_problem(await c.post("/v1/jobs", json=payload), 400, "invalid_request")
            assert [e["pointer"] for e in body["errors"]] == [pointer], (payload, body)
        body = assert_problem(await c.post("/v1/jobs", json={"model": "nope", "input": {
            "text": "a"}}), 400, "model_not_found")
        assert body["errors"][0]["pointer"] == "/model"


async def test_query_parameter_errors_name_the_parameter(svc) -> None:
    async with svc.client() as c:
        job = (await c.post("/v1/jobs", json=OK)).json()["job_id"]
        for query, pointer in (("limit=0", "query:limit"), ("limit=abc", "query:limit"),
                               ("limit=5000", "query:limit"), ("status=done", "query:status"),
                               ("cursor=!!!", "query:cursor")):
            body = assert_problem(await c.get(f"/v1/jobs/{job}/results?{query}"), 400,
                                  "invalid_request")
            assert body["errors"][0]["pointer"] == pointer, (query, body)
        body = assert_problem(await c.get("/v1/jobs?cursor=bm90IGEgY3Vyc29y"), 400,
                              "invalid_request")
        assert body["errors"][0]["pointer"] == "query:cursor"


async def test_every_size_limit_is_a_413_with_its_field(svc) -> None:
    async with svc.client() as c:
        big = {"model": "minilm", "input": {"text": "x" * 70_000}}
        assert_problem(await c.post("/v1/jobs", json=big), 413, "payload_too_large")
        many = {"model": "minilm", "inputs": [{"text": "a"}] * 51}
        body = assert_problem(await c.post("/v1/jobs", json=many), 413, "payload_too_large")
        assert body["errors"][0]["pointer"] == "/inputs"
        long = {"model": "minilm", "inputs": [{"text": "a"}, {"text": "y" * 1001}]}
        body = assert_problem(await c.post("/v1/jobs", json=long), 413, "payload_too_large")
        assert body["errors"][0]["pointer"] == "/inputs/1/text"
        meta = {**OK, "metadata": {"note": "z" * 300}}
        body = assert_problem(await c.post("/v1/jobs", json=meta), 413, "payload_too_large")
        assert body["errors"][0]["pointer"] == "/metadata"
        assert (await c.get("/v1/jobs")).json()["jobs"] == []  # nothing was created


async def test_idempotency_key_length_and_charset_are_400s(svc) -> None:
    async with svc.client() as c:
        for key in ("k" * 256, "has space", "tab\tkey", "ключ"):
            r = await c.post("/v1/jobs", json=OK,
                             headers={"Idempotency-Key": key.encode("utf-8")})
            body = assert_problem(r, 400, "invalid_request")
            assert body["errors"][0]["pointer"] == "header:Idempotency-Key"
        ok = await c.post("/v1/jobs", json=OK, headers={"Idempotency-Key": "k" * 255})
        assert ok.status_code == 202


async def test_an_unexpected_exception_is_a_500_problem_with_the_request_id(svc,
                                                                            monkeypatch) -> None:
    async def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(services(svc).reader, "list", boom)
    async with svc.client() as c:
        r = await c.get("/v1/jobs", headers={"X-Request-Id": "req-42"})
        body = assert_problem(r, 500, "internal_error")
        assert body["request_id"] == "req-42" == r.headers["x-request-id"]
        assert "bug" not in r.text  # no internals leak


async def test_the_openapi_document_describes_every_route_and_the_envelope(svc) -> None:
    async with svc.client() as c:
        doc = (await c.get("/schema/openapi.json")).json()
    paths = doc["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel",
            "/v1/jobs/{job_id}/results", "/v1/jobs/{job_id}/results.jsonl"} <= set(paths)
    assert set(doc["components"]["schemas"]["Problem"]["required"]) >= {
        "type", "title", "status", "detail", "code", "retryable", "request_id"}
    for path, ops in paths.items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    # The OpenAI-compatible surface answers errors in OpenAI's own shape.
                    want = "application/json" if path.startswith("/openai/") \
                        else "application/problem+json"
                    assert list(resp["content"]) == [want], (path, method, status)


async def test_the_openapi_document_declares_the_limits_and_links_the_job_routes(svc) -> None:
    async with svc.client() as c:
        doc = (await c.get("/schema/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    submit = doc["paths"]["/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SubmitRequest")
    props = schemas["SubmitRequest"]["properties"]
    assert props["timeout_s"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert props["inputs"]["anyOf"][0]["maxItems"] == 50  # the fixture's max_items_per_job
    assert schemas["InputItem"]["properties"]["text"]["maxLength"] == 1000
    assert set(props["model"]["enum"]) >= {"minilm", "minilm@1"}
    assert {"415", "413", "405"} <= set(submit["responses"])
    links = submit["responses"]["202"]["links"]
    op_ids = {op["operationId"]: path for path, ops in doc["paths"].items()
              for op in ops.values()}
    assert {op_ids[link["operationId"]] for link in links.values()} == {
        "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results", "/v1/jobs/{job_id}/results.jsonl",
        "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/retry"}
    assert all(link["parameters"] == {"job_id": "$response.body#/job_id"}
               for link in links.values())
    results = {p["name"]: p for p in doc["paths"]["/v1/jobs/{job_id}/results"]["get"][
        "parameters"]}
    assert results["cursor"]["schema"]["pattern"] == "^[A-Za-z0-9_-]*$"
    assert results["limit"]["schema"]["maximum"] == 1000
    assert "head" not in doc["paths"]["/v1/jobs"]  # HEAD is GET without a body
    assert "304" in doc["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
