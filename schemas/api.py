"""HTTP API bodies: what tenants send and what they get back.

External input rejects unknown fields (a typo is an error, not a silent default).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from schemas.errors import ItemError, JobError
from schemas.states import ItemStatus, JobStatus, Outcome, Priority
from schemas.webhooks import WebhookRequest

ClientId = Annotated[str, msgspec.Meta(max_length=256)]
METADATA_MAX_DEPTH = 32
"""How deep ``metadata`` may nest (objects and arrays): far below any parser's recursion
limit, so every reader downstream (stores, clients) can decode what we accepted."""
METADATA_MAX_NUMBER = 2**53 - 1
"""Numbers in ``metadata`` lie within ±(2^53 - 1) (I-JSON, RFC 7493): what every JSON reader
downstream holds exactly, a JavaScript client included."""


class InputItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One input: the text to embed and an optional client-chosen id echoed in results."""

    text: str
    id: ClientId | None = None


class SubmitRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /v1/jobs``: exactly one of ``inputs`` (a batch) or ``input`` (one item)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    inputs: list[InputItem] | None = None
    input: InputItem | None = None
    priority: Priority = Priority.BATCH
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None
    metadata: dict[str, Any] | None = None
    webhook: WebhookRequest | None = None
    """Where to send the job's end (Standard Webhooks, signed with the tenant's secret);
    None: the tenant's default endpoint, if it has one."""
    input_file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """Instead of ``inputs``/``input``: an uploaded file (``POST /v1/files``) whose lines are
    the job's items, up to ``max_file_lines``; chunks are queued in the background."""

    def items(self) -> list[InputItem]:
        """The job's inputs in order, whichever of the two forms the request used."""
        if self.inputs is not None:
            return self.inputs
        return [self.input] if self.input is not None else []


class Counts(msgspec.Struct, frozen=True):
    """A job's items by state; they always add up to ``total``."""

    total: int
    pending: int
    running: int
    succeeded: int
    failed: int


class JobStatusDoc(msgspec.Struct, frozen=True):
    """The small, O(1) status document served from Redis."""

    job_id: str
    status: JobStatus
    outcome: Outcome | None
    counts: Counts
    model: str
    model_version: int
    priority: Priority
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str
    error: JobError | None = None
    queue_position: int | None = None
    """Items of the same model and priority ahead of the job's next pending item under the
    fair share (0 once every item has started); None when unknown or terminal."""
    estimated_completion_at: str | None = None
    """When the job should end (RFC 3339) at the runners' measured throughput; None when
    unknown (no measured throughput) or terminal."""
    parent_job_id: str | None = None
    """A retry (``POST /v1/jobs/{id}/retry``): the job whose failed items this one re-runs;
    None otherwise."""


class EmbeddingOutput(msgspec.Struct, frozen=True):
    """The output of an embedding model for one item."""

    embedding: list[float]
    num_tokens: int
    truncated: bool = False


class ResultItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item of a job's results, successes and failures alike."""

    index: int
    status: ItemStatus
    model_version: int
    id: str | None = None
    output: EmbeddingOutput | None = None
    error: ItemError | None = None
    simulated: bool = False
    """True when the simulated device (benchmarks, capacity planning) made the output: no
    model ran and the vector carries no meaning. Absent otherwise."""
    parent_index: int | None = None
    """In a retry's results: the item's index in the parent job (``index`` is its place in
    the retry). Absent otherwise."""


class ResultsPage(msgspec.Struct, frozen=True):
    """A page of ``GET /v1/jobs/{id}/results``; ``next_cursor`` is None on the last page."""

    job_id: str
    items: list[ResultItem]
    next_cursor: str | None


class JobList(msgspec.Struct, frozen=True):
    """A page of ``GET /v1/jobs``, newest first; ``next_cursor`` is None on the last page."""

    jobs: list[JobStatusDoc]
    next_cursor: str | None


class FieldError(msgspec.Struct, frozen=True):
    """A pointer (RFC 6901) into the request and what is wrong there."""

    pointer: str
    detail: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details with inferq's extension members: the one error envelope."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    retryable: bool
    request_id: str
    retry_after_s: float | None = None
    errors: list[FieldError] | None = None
