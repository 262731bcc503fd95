"""Hostile submit bodies: whatever the bytes, a 400 ``invalid_request`` pointing at the
member (or a 415 for a body that is not JSON), never a 500 — and nothing is created.

The decoder itself is checked without a server (every case, fast); a running gateway then
answers each case once, end to end."""

from __future__ import annotations

import json
import time

import pytest

from core.config import Settings
from gateway import errors as E
from gateway.body import decode_submit, pointer_of
from tests.gateway.support import assert_problem, running

OK = '"model": "minilm", "input": {"text": "x"}'
DEEP = 5000


def nest(n: int, open_: str = "[", close: str = "]", leaf: str = "") -> str:
    return open_ * n + leaf + close * n


# (what, body, pointer of the first error); all are 400 invalid_request.
CASES = [
    ("metadata 5,000 arrays deep", f'{{{OK}, "metadata": {{"a": {nest(DEEP)}}}}}', "/metadata"),
    ("metadata 100,000 objects deep",
     f'{{{OK}, "metadata": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}", "/metadata"),
    ("metadata 33 levels", f'{{{OK}, "metadata": {{"a": {nest(32)}}}}}',
     "/metadata/a" + "/0" * 31),
    ("inputs 5,000 deep", f'{{"model": "minilm", "inputs": {nest(DEEP)}}}', "/inputs/0"),
    ("a text 5,000 deep", f'{{"model": "minilm", "input": {{"text": {nest(DEEP)}}}}}',
     "/input/text"),
    ("unknown member 5,000 deep", f'{{{OK}, "x": {nest(DEEP)}}}', "/x"),
    ("top level 5,000 deep", nest(DEEP), ""),
    ("timeout_s 1e999", f'{{{OK}, "timeout_s": 1e999}}', "/timeout_s"),
    ("timeout_s 0", f'{{{OK}, "timeout_s": 0}}', "/timeout_s"),
    ("timeout_s negative", f'{{{OK}, "timeout_s": -1}}', "/timeout_s"),
    ("a 5,000-digit integer", f'{{{OK}, "metadata": {{"n": {"9" * 5000}}}}}', "/metadata"),
    ("2**64 in metadata", f'{{{OK}, "metadata": {{"n": [1, {2**64}]}}}}', "/metadata/n/1"),
    ("1e300 in metadata", f'{{{OK}, "metadata": {{"n": 1e300}}}}', "/metadata/n"),
    ("1e999 in metadata", f'{{{OK}, "metadata": {{"n": 1e999}}}}', "/metadata"),
    ("duplicate top-level member", '{"model": "minilm", "model": "x", "input": {"text": "x"}}',
     "/model"),
    ("duplicate member in an item",
     '{"model": "minilm", "inputs": [{"text": "a"}, {"text": "b", "text": "c"}]}',
     "/inputs/1/text"),
    ("duplicate member in metadata", f'{{{OK}, "metadata": {{"a/b": {{"c": 1, "c": 2}}}}}}',
     "/metadata/a~1b/c"),
    ("NaN", f'{{{OK}, "timeout_s": NaN}}', ""),
    ("Infinity", f'{{{OK}, "metadata": {{"x": Infinity}}}}', ""),
    ("-Infinity", f'{{{OK}, "timeout_s": -Infinity}}', ""),
    ("text is a number", '{"model": "minilm", "inputs": [{"text": "a"}, {"text": 7}]}',
     "/inputs/1/text"),
    ("id is an object", '{"model": "minilm", "input": {"text": "a", "id": {}}}', "/input/id"),
    ("inputs is a string", '{"model": "minilm", "inputs": "abc"}', "/inputs"),
    ("priority is a list", f'{{{OK}, "priority": ["batch"]}}', "/priority"),
    ("metadata is a list", f'{{{OK}, "metadata": [1]}}', "/metadata"),
    ("missing model", '{"input": {"text": "x"}}', "/model"),
    ("unknown member in an item", '{"model": "minilm", "inputs": [{"text": "a", "c": 1}]}',
     "/inputs/0/c"),
    ("body is an array", "[1, 2]", ""),
    ("body is a string", '"hello"', ""),
    ("truncated", '{"model": "minilm", "input": {"text": "a"', ""),
    ("trailing garbage", f"{{{OK}}} x", ""),
    ("empty body", "", ""),
    ("a lone comma", ",", ""),
]
RAW_CASES = [  # not expressible as str
    ("invalid UTF-8 in a text", b'{"model": "minilm", "input": {"text": "\xff\xfe"}}', ""),
    ("a NUL byte outside strings", b'{"model": "minilm",\x00 "input": {"text": "x"}}', ""),
    ("UTF-16", f"{{{OK}}}".encode("utf-16"), ""),
]
ALL = [(w, b.encode() if isinstance(b, str) else b, p) for w, b, p in CASES + RAW_CASES]
SETTINGS = Settings()


@pytest.mark.parametrize(("what", "body", "pointer"), ALL, ids=[c[0] for c in ALL])
def test_the_decoder_answers_400_with_a_pointer(what: str, body: bytes, pointer: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(E.InvalidRequest) as info:
        decode_submit(body, "application/json", SETTINGS)
    assert time.perf_counter() - t0 < 0.5, what  # O(size), never a pathological walk
    assert info.value.errors and info.value.errors[0].pointer == pointer, (
        what, info.value.detail, info.value.errors)


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/x-www-form-urlencoded",
                                   "application/json; charset=latin-1", "application/jsonx",
                                   "multipart/form-data; boundary=x"])
def test_a_body_not_declared_json_is_a_415(ctype: str) -> None:
    with pytest.raises(E.UnsupportedMediaType):
        decode_submit(f"{{{OK}}}".encode(), ctype, SETTINGS)


@pytest.mark.parametrize("ctype", ["application/json", "Application/JSON; charset=UTF-8",
                                   "application/problem+json", 'application/json;charset="utf-8"'])
def test_json_media_types_are_accepted(ctype: str) -> None:
    assert decode_submit(f"{{{OK}}}".encode(), ctype, SETTINGS).model == "minilm"


def test_accepted_edge_cases_decode() -> None:
    body = {"model": "minilm", "inputs": [{"text": "é\u2028", "id": None}], "timeout_s": 1e-9,
            "metadata": {"n": 2**53 - 1, "f": -1.5e15, "deep": json.loads(nest(31, leaf="1")),
                         "s": "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")}}
    req = decode_submit(json.dumps(body).encode(), "application/json", SETTINGS)
    assert req.items()[0].text == "é\u2028" and req.metadata["n"] == 2**53 - 1


def test_oversized_metadata_is_a_413_before_it_is_walked() -> None:
    body = f'{{{OK}, "metadata": {{"a": [{",".join(["[1]"] * 20000)}]}}}}'.encode()
    with pytest.raises(E.PayloadTooLarge) as info:
        decode_submit(body, "application/json", SETTINGS)
    assert info.value.errors[0].pointer == "/metadata"


def test_msgspec_locations_become_pointers() -> None:
    assert pointer_of("Expected `int`, got `str` - at `$.inputs[12].text`") == (
        "/inputs/12/text", "Expected `int`, got `str`")
    assert pointer_of("Object contains unknown field `a/b` - at `$.input`")[0] == "/input/a~1b"
    assert pointer_of("Number out of range - at `$.metadata[...][1]`")[0] == "/metadata"
    assert pointer_of("Object missing required field `model`")[0] == "/model"


async def test_the_gateway_answers_every_hostile_body_without_a_5xx(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        for what, body, pointer in ALL:
            r = await c.post("/v1/jobs", content=body,
                             headers={"content-type": "application/json"})
            doc = assert_problem(r, 400, "invalid_request")
            assert doc["errors"][0]["pointer"] == pointer, (what, doc)
        for ctype in ("text/plain", None):
            r = await c.post("/v1/jobs", content=f"{{{OK}}}".encode(),
                             headers={"content-type": ctype} if ctype else {})
            doc = assert_problem(r, 415, "unsupported_media_type")
            assert doc["retryable"] is False
        assert (await c.get("/v1/jobs")).json()["jobs"] == []  # nothing was created
        r = await c.post("/v1/jobs", content=f"{{{OK}}}".encode(),
                         headers={"content-type": "application/json"})
        assert r.status_code == 202, r.text
