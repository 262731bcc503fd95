"""The ids of a batch and its files, and one output line per request, as pure functions.

A batch is its native job: ``batch_<job_id>``. Its output and error files are not stored but
rendered from the job's results: ``file-<job_id>-output`` and ``file-<job_id>-errors``. Every
id in a line derives from the job id and the request's place in the input, so a terminal
batch renders the same bytes every time.

A request's texts are consecutive native items. It succeeded when every one did: one
embeddings response, its vectors in input order (``index`` 0..n-1). Otherwise its first failed
item decides its line in the error file:

- the text's fault (``empty_text``, ``invalid_text``): the 400 the embeddings endpoint answers,
  ``param`` naming the text;
- the batch ended first (cancelled, expired, its submission interrupted): no response, an
  ``error`` whose code says why (``batch_cancelled``, ``batch_expired``, ...), as OpenAI's;
- anything else: the 500 the endpoint would have answered (the service's fault, retryable).
"""

from __future__ import annotations

import re

import msgspec

from gateway.jobend import JOB_LEVEL
from gateway.openai.embeddings import INPUT_ERRORS, encode_vector
from schemas.api import ResultItem
from schemas.errors import ErrorCode
from schemas.openai import Embedding, EmbeddingsResponse, ErrorDetail, ErrorResponse, Usage
from schemas.openai_batch import LineShape, OutputError, OutputLine, OutputResponse
from schemas.states import ItemStatus

OUTPUT, ERRORS = "output", "errors"
_JOB = re.compile(r"[0-9a-f]{32}")
_FILE = re.compile(r"file-([0-9a-f]{32})-(output|errors)")
_ENC = msgspec.json.Encoder()
# A job-level end as OpenAI names it in an error file.
_ENDED = {ErrorCode.CANCELLED: "batch_cancelled", ErrorCode.DEADLINE_EXCEEDED: "batch_expired"}


def batch_id(job_id: str) -> str:
    """The batch that is this native job."""
    return f"batch_{job_id}"


def job_of(batch: str) -> str | None:
    """The native job of a batch id; None for anything that is not one."""
    job_id = batch.removeprefix("batch_")
    return job_id if batch.startswith("batch_") and _JOB.fullmatch(job_id) else None


def file_id(job_id: str, kind: str) -> str:
    """The id of a batch's output (``kind`` "output") or error ("errors") file."""
    return f"file-{job_id}-{kind}"


def file_of(file: str) -> tuple[str, str] | None:
    """(job id, kind) of an output or error file id; None for any other id."""
    m = _FILE.fullmatch(file)
    return (m.group(1), m.group(2)) if m else None


def request_line(job_id: str, n: int, shape: LineShape, items: list[ResultItem],
                 model: str) -> tuple[bool, bytes]:
    """Request ``n``'s line (with its newline) and whether it goes to the output file."""
    rid = f"{job_id}_{n}"
    failed = next((k for k, it in enumerate(items)
                   if it.status != ItemStatus.SUCCEEDED or it.output is None), None)
    if failed is None:
        outputs = [it.output for it in items]
        fmt = shape.body.encoding_format
        data = [Embedding(index=k, embedding=encode_vector(o.embedding, fmt))  # type: ignore[union-attr]
                for k, o in enumerate(outputs)]
        tokens = sum(o.num_tokens for o in outputs)  # type: ignore[union-attr]
        body = EmbeddingsResponse(data=data, model=model, usage=Usage(tokens, tokens))
        line = OutputLine(id=f"batch_req_{rid}", custom_id=shape.custom_id,
                          response=OutputResponse(200, f"req_{rid}", body), error=None)
        return True, _ENC.encode(line) + b"\n"
    item = items[failed]
    code = item.error.code if item.error else ErrorCode.INTERNAL_ERROR.value
    message = item.error.message if item.error else "no result"
    response = error = None
    if code in JOB_LEVEL:
        error = OutputError(_ENDED.get(ErrorCode(code), code), message)
    elif code in INPUT_ERRORS:
        param = "input" if isinstance(shape.body.input, str) else f"input[{failed}]"
        response = OutputResponse(400, f"req_{rid}", ErrorResponse(ErrorDetail(
            message=f"{param}: {message}", type="invalid_request_error", param=param,
            code=code)))
    else:
        response = OutputResponse(500, f"req_{rid}", ErrorResponse(ErrorDetail(
            message=message, type="server_error", param=None, code=code)))
    line = OutputLine(id=f"batch_req_{rid}", custom_id=shape.custom_id, response=response,
                      error=error)
    return False, _ENC.encode(line) + b"\n"
