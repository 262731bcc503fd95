"""The Batch API's pure parts, without a service: how a batch file's lines are refused (each
refusal naming its line) and converted, how a job's counts become request counts, and which
file a request's line goes to."""

from __future__ import annotations

import dataclasses
import json

import msgspec
import pytest

from core.config import Settings
from gateway import errors as E
from gateway.openai.batchfile import LineChecker
from gateway.openai.batchview import known_counts
from gateway.openai.errors import UnsupportedParameter
from gateway.openai.outputlines import file_of, job_of, request_line
from schemas.api import EmbeddingOutput, ResultItem
from schemas.errors import ItemError
from schemas.openai_batch import BatchRecord, LineShape
from schemas.states import ItemStatus, JobStatus
from store.jobstate import JobStatusSnapshot

JOB = "0" * 32


def resolve(model: str) -> tuple[str, int]:
    if model not in ("minilm", "minilm@1"):
        raise E.ModelNotFoundError(f"no model {model!r}")
    return "minilm", 1


def checker(**overrides) -> LineChecker:
    return LineChecker(dataclasses.replace(Settings(), **overrides), resolve, lambda *_: 384)


def raw(custom_id="a", input="x", url="/v1/embeddings", **body) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": "minilm", "input": input, **body}}).encode()


def test_each_text_becomes_one_native_line_carrying_its_custom_id() -> None:
    c = checker()
    out = c.line(raw("a", ["x", "y"]), 1) + c.line(b"  ", 2) + c.line(raw("b", "z"), 3)
    assert [json.loads(x) for x in out.splitlines()] == [
        {"text": "x", "id": "a"}, {"text": "y", "id": "a"}, {"text": "z", "id": "b"}]
    c.finish()
    assert (c.requests, c.inputs, c.model) == (2, 3, "minilm")


@pytest.mark.parametrize(("line", "error", "pointer"), [
    (b"{nope", E.InvalidRequest, "line:4"),
    (b'{"custom_id": "a"}', E.InvalidRequest, "line:4"),
    (raw(url="/v1/chat/completions"), UnsupportedParameter, "line:4/url"),
    (raw(input=""), E.InvalidRequest, "line:4/body/input"),
    (raw(input=["x", [101]]), UnsupportedParameter, "line:4/body/input/1"),
    (raw(dimensions=64), UnsupportedParameter, "line:4/body/dimensions"),
    (raw(custom_id=""), E.InvalidRequest, "line:4/custom_id"),
    (raw(truncate=True), E.InvalidRequest, "line:4/body"),
])
def test_a_refused_line_is_named(line: bytes, error: type, pointer: str) -> None:
    c = checker()
    with pytest.raises(error) as info:
        c.line(line, 4)
    assert info.value.detail.startswith("line 4")
    assert info.value.errors[0].pointer.startswith(pointer)


def test_one_model_a_file_and_it_must_be_served() -> None:
    with pytest.raises(E.InvalidRequest, match="line 1: no model 'gpt-4'"):
        checker().line(raw(model="gpt-4"), 1)
    c = checker()
    c.line(raw("a"), 1)
    with pytest.raises(E.InvalidRequest, match="differs from the first line"):
        c.line(raw("b", model="minilm@1"), 2)


def test_a_custom_id_twice_names_both_lines_and_the_limits_hold() -> None:
    c = checker()
    for n, cid in enumerate(["a", "b", "c", "b", "a"], start=1):
        c.line(raw(cid), n)
    with pytest.raises(E.InvalidRequest, match="line 4: `custom_id` is the same as line 2"):
        c.finish()
    with pytest.raises(E.InvalidRequest, match="no requests"):
        checker().finish()
    small = checker(max_file_lines=3)
    small.line(raw("a", ["x", "y"]), 1)
    with pytest.raises(E.PayloadTooLarge):
        small.line(raw("b", ["x", "y"]), 2)


def snap(status: JobStatus, total: int, succeeded: int, failed: int) -> JobStatusSnapshot:
    return JobStatusSnapshot(
        job_id=JOB, tenant="t", model="minilm", version=1, priority="batch", total=total,
        created_at=0, expires_at=1e10, deadline=None, status=status, outcome=None,
        started_at=None, finished_at=None, error=None, succeeded=succeeded, failed=failed,
        running=0, rev=1)


def test_request_counts_from_item_counts() -> None:
    one_text_each = BatchRecord("file-x", "/v1/embeddings", "24h", requests=5)
    assert known_counts(one_text_each, snap(JobStatus.SUCCEEDED, 5, 3, 2)).completed == 3
    lists = BatchRecord("file-x", "/v1/embeddings", "24h", requests=4)  # 10 texts
    running = known_counts(lists, snap(JobStatus.RUNNING, 10, 7, 1))
    assert (running.completed, running.failed) == (1, 1)  # lower bounds: 7 - 6, at least 1
    assert known_counts(lists, snap(JobStatus.SUCCEEDED, 10, 10, 0)).completed == 4
    assert known_counts(lists, snap(JobStatus.FAILED, 10, 0, 10)).failed == 4
    assert known_counts(lists, snap(JobStatus.SUCCEEDED, 10, 8, 2)) is None  # render it


def shape(custom_id: str, input) -> LineShape:
    return msgspec.json.decode(json.dumps({"custom_id": custom_id, "body": {"input": input}}),
                               type=LineShape)


def item(index: int, code: str | None = None) -> ResultItem:
    if code is None:
        return ResultItem(index=index, status=ItemStatus.SUCCEEDED, model_version=1,
                          output=EmbeddingOutput([0.5, 0.5], num_tokens=3))
    return ResultItem(index=index, status=ItemStatus.FAILED, model_version=1,
                      error=ItemError(code, "why"))


def test_which_file_a_request_goes_to_and_how_its_line_reads() -> None:
    ok, line = request_line(JOB, 3, shape("a", ["x", "y"]), [item(0), item(1)], "minilm@1")
    body = json.loads(line)
    assert ok and body["id"] == f"batch_req_{JOB}_3" and body["error"] is None
    assert [d["index"] for d in body["response"]["body"]["data"]] == [0, 1]
    assert body["response"]["body"]["usage"]["total_tokens"] == 6

    ok, line = request_line(JOB, 0, shape("b", ["x", "y"]), [item(0), item(1, "empty_text")],
                            "minilm@1")
    error = json.loads(line)["response"]["body"]["error"]
    assert not ok and (error["param"], error["code"]) == ("input[1]", "empty_text")
    for code, want in (("cancelled", "batch_cancelled"), ("deadline_exceeded", "batch_expired")):
        ok, line = request_line(JOB, 0, shape("c", "x"), [item(0, code)], "minilm@1")
        assert json.loads(line)["response"] is None
        assert json.loads(line)["error"]["code"] == want
    ok, line = request_line(JOB, 0, shape("d", "x"), [item(0, "internal_error")], "minilm@1")
    assert json.loads(line)["response"]["status_code"] == 500


def test_ids_of_batches_and_their_files() -> None:
    assert job_of(f"batch_{JOB}") == JOB
    assert job_of("batch_nope") is None and job_of(JOB) is None
    assert file_of(f"file-{JOB}-errors") == (JOB, "errors")
    assert file_of(f"file-{JOB}") is None
