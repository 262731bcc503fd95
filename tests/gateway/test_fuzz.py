"""Schema-driven fuzz of every endpoint (hypothesis): whatever the method, path, parameters,
headers and body, the gateway never answers 5xx and every error is the one envelope.

The operations come from the served OpenAPI document; hypothesis draws values for their
parameters (valid, near-valid and garbage), credentials of two tenants (or none, or junk),
and bodies from structured near-valid submissions to random bytes. It runs in a worker
thread with a blocking client while the service runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import string
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.e2e.harness import KEYS
from tests.gateway.support import ENVELOPE, OPTIONAL, running, tenants_with

# What a client can send at all: printable ASCII, no leading or trailing space (h11's rule).
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                      max_size=40).map(str.strip)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
ITEM = st.fixed_dictionaries(
    {"text": st.one_of(st.text(max_size=60), st.integers(), st.none())},
    optional={"id": st.one_of(st.text(max_size=300), st.integers()), "extra": JSON})
SUBMIT = st.fixed_dictionaries(
    {"model": st.one_of(st.sampled_from(["minilm", "minilm@1", "minilm@9", "nope", ""]),
                        st.text(max_size=10))},
    optional={"inputs": st.lists(ITEM, max_size=3), "input": ITEM,
              "priority": st.sampled_from(["batch", "interactive", "urgent", 3]),
              "timeout_s": st.one_of(st.floats(allow_nan=False), st.integers(), st.text()),
              "metadata": st.one_of(st.dictionaries(st.text(max_size=8), JSON, max_size=3),
                                    JSON)})
VALID = st.fixed_dictionaries(
    {"model": st.sampled_from(["minilm", "minilm@1"]),
     "inputs": st.lists(st.fixed_dictionaries({"text": st.text(max_size=40)},
                                              optional={"id": st.text(max_size=10)}),
                        min_size=1, max_size=3)},
    optional={"priority": st.sampled_from(["batch", "interactive"]),
              "timeout_s": st.floats(min_value=0.5, max_value=3600),
              "metadata": st.dictionaries(st.text(max_size=8), SCALARS, max_size=3)})
BODY = st.one_of(st.none(), VALID.map(lambda d: json.dumps(d).encode()),
                 SUBMIT.map(lambda d: json.dumps(d).encode()),
                 JSON.map(lambda d: json.dumps(d).encode()), st.binary(max_size=64))


def operations(doc: dict) -> list[tuple[str, str, list[dict]]]:
    """Every operation of the document."""
    return [(method.upper(), path, op.get("parameters", []))
            for path, methods in doc["paths"].items() for method, op in methods.items()]


OPENAI_ERROR = {"message", "type", "param", "code"}


def check(r: httpx.Response, what: str) -> None:
    if what.split(" ")[1].startswith("/openai/"):
        check_openai(r, what)
        return
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), what
        body = r.json()
        assert ENVELOPE <= set(body) <= ENVELOPE | OPTIONAL, (what, body)
        assert body["status"] == r.status_code and isinstance(body["retryable"], bool)
    elif r.status_code == 304:
        assert r.content == b""
    elif r.headers["content-type"].startswith("application/x-ndjson"):
        for line in r.content.splitlines():
            json.loads(line)
    else:
        json.loads(r.content)


def fuzz(base_url: str, doc: dict, jobs: dict[str, str]) -> dict[int, int]:
    """Runs the fuzz; returns how many answers had each status (for coverage checks)."""
    ops = operations(doc)
    # The submit route is the one that creates state; as the API grows, a uniform draw would
    # reach it ever less often, so it gets about a fifth of the draws whatever the count.
    submit = [op for op in ops if op[:2] == ("POST", "/v1/jobs")]
    ops = ops + submit * max(3, len(ops) // 4)
    seen: dict[int, int] = {}
    path_value = st.integers(0, 4).flatmap(lambda n: st.sampled_from(list(jobs.values())) if n < 3
                                           else st.one_of(st.text(max_size=30), st.text(
                                               alphabet=string.hexdigits, min_size=32,
                                               max_size=32)))
    good = [f"Bearer {KEYS['alpha']}", f"Bearer {KEYS['beta']}"]
    auth = st.integers(0, 7).flatmap(  # mostly a real key: the interesting code is past auth
        lambda n: st.sampled_from(good) if n < 6 else st.one_of(st.none(), HEADER_TEXT))

    @hsettings(max_examples=400, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9)) == 0:  # now and then, off the map
            method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
            path = "/" + quote(data.draw(st.text(max_size=20)), safe="/")
            params = []
        else:
            method, path, params = data.draw(st.sampled_from(ops))
        query, headers = {}, {}
        for p in params:
            if p["in"] != "path" and data.draw(st.integers(0, 3)) == 0:
                continue
            value = data.draw(st.one_of(st.text(max_size=20), st.integers().map(str)))
            if p["in"] == "path":
                path = path.replace("{" + p["name"] + "}",
                                    quote(data.draw(path_value), safe="") or "x")
            elif p["in"] == "query":
                query[p["name"]] = value
            elif p["in"] == "header":  # half the time a well-formed (fresh) key or tag
                headers[p["name"]] = data.draw(st.one_of(st.uuids().map(str), HEADER_TEXT))
        path = path.replace("{job_id}", quote(data.draw(path_value), safe="") or "x")
        if (a := data.draw(auth)) is not None:
            headers["Authorization"] = a
        if data.draw(st.integers(0, 3)) == 0:
            headers["Content-Type"] = data.draw(st.sampled_from(
                ["application/json", "text/plain", "application/x-www-form-urlencoded"]))
        body = None
        if method in ("POST", "PUT", "PATCH"):  # half the time a valid submission
            body = data.draw(st.one_of(VALID.map(lambda d: json.dumps(d).encode()), BODY))
        r = client.request(method, path, params=query, headers=headers, content=body)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        check(r, f"{method} {path} {query} {headers} {body!r:.200}")

    with httpx.Client(base_url=base_url, timeout=30) as client:
        run()
    return seen


async def test_no_request_gets_a_5xx_or_an_answer_outside_the_envelope(settings,
                                                                        tmp_path) -> None:
    generous = {"requests_per_s": 10_000, "polls_per_s": 10_000}
    tenants = tenants_with(tmp_path / "fuzz-tenants.toml", alpha=generous, beta=generous)
    async with running(settings, tenants_file=tenants) as svc:
        jobs = {}
        for tenant in ("alpha", "beta"):
            async with svc.client(tenant) as c:
                r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
                    {"text": "fuzz me", "id": "a"}, {"text": "me too"}]})
                jobs[tenant] = r.json()["job_id"]
            async with svc.client(tenant) as c:
                await c.post(f"/v1/jobs/{jobs[tenant]}/cancel")  # so results pages have rows
        async with svc.client() as c:
            doc = (await c.get("/schema/openapi.json")).json()
        seen = await asyncio.to_thread(fuzz, svc.url, doc, jobs)
    # The fuzz reached past authentication and validation, not only the front door.
    assert {200, 202, 400, 401, 404} <= set(seen), seen


def check_openai(r: httpx.Response, what: str) -> None:
    """The OpenAI-compatible surface answers errors in OpenAI's shape; with no runner here a
    valid embeddings request is a 503 ``unavailable`` at once (never a wait, never a 500)."""
    if r.status_code >= 400:
        assert r.status_code < 500 or (r.status_code, r.json()["error"]["code"]) == (
            503, "unavailable"), (what, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json"), what
        assert set(r.json()["error"]) == OPENAI_ERROR, (what, r.text[:300])

