"""The OpenAI Batch API's bodies (``/openai/v1/files``, ``/openai/v1/batches``) as the official
client reads them, the line formats of a batch's input and output files, and what the gateway
keeps about them. External input rejects unknown fields; stored records tolerate them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ErrorResponse

BATCH_RECORD_KEY = "openai_batch"
"""The job metadata member that holds an OpenAI batch's own fields (the batch is the job)."""
CustomId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
"""A request's ``custom_id``: it becomes the id of the request's native items (ClientId)."""
MetadataKey = Annotated[str, msgspec.Meta(max_length=64)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=512)]
BatchMetadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=16)]
"""OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512."""

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed",
                      "expired", "cancelling", "cancelled"]


# Input file lines


class BatchInputLine(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One line of a batch input file: a request to ``url`` with ``body``."""

    custom_id: CustomId
    method: str
    url: str
    body: EmbeddingsRequest


class _BodyShape(msgspec.Struct):
    input: str | list[msgspec.Raw]
    encoding_format: str = "float"


class LineShape(msgspec.Struct):
    """What rendering a batch's output needs of an input line that passed the upload: its
    ``custom_id``, how many texts it holds (a string: one) and the encoding it asked for."""

    custom_id: str
    body: _BodyShape

    @property
    def inputs(self) -> int:
        """Texts in the request, each one native item."""
        return 1 if isinstance(self.body.input, str) else len(self.body.input)


# Files


class OpenAIFile(msgspec.Struct, frozen=True):
    """OpenAI's ``File`` object: an uploaded batch input or a batch's output or error file."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    expires_at: int | None = None
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    object: Literal["file"] = "file"


class BatchFileMeta(msgspec.Struct, frozen=True):
    """Kept as the description of an uploaded batch file's bytes: its owner and what the
    upload found in it, and the native file its inputs were converted into."""

    tenant: str
    filename: str
    bytes: int
    sha256: str
    created_at: float
    expires_at: float
    native_file_id: str
    requests: int
    inputs: int
    model: str


# Batches


class BatchCreateRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /openai/v1/batches``."""

    input_file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    endpoint: str
    completion_window: str
    metadata: BatchMetadata | None = None


class BatchRecord(msgspec.Struct, frozen=True):
    """The batch's own fields, kept in its native job's ``metadata`` (under ``openai_batch``)
    so that they are as durable as the job and expire with it."""

    input_file_id: str
    endpoint: str
    completion_window: str
    requests: int
    metadata: dict[str, str] | None = None


class BatchRequestCounts(msgspec.Struct, frozen=True):
    """Requests (input lines) by outcome: a request completed when all its texts did."""

    total: int
    completed: int
    failed: int


class BatchError(msgspec.Struct, frozen=True):
    """Why a batch failed as a whole."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(msgspec.Struct, frozen=True):
    """The batch-level errors of a failed batch."""

    data: list[BatchError]
    object: Literal["list"] = "list"


class Batch(msgspec.Struct, frozen=True):
    """OpenAI's ``Batch`` object."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: int
    request_counts: BatchRequestCounts
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: BatchErrors | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    metadata: dict[str, str] | None = None
    model: str | None = None
    object: Literal["batch"] = "batch"


class BatchList(msgspec.Struct, frozen=True):
    """``GET /openai/v1/batches``: newest first; the next page is ``after=<last_id>``."""

    data: list[Batch]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: Literal["list"] = "list"


# Output and error file lines


class OutputResponse(msgspec.Struct, frozen=True):
    """The HTTP answer one request got: an embeddings response, or an error body."""

    status_code: int
    request_id: str
    body: EmbeddingsResponse | ErrorResponse


class OutputError(msgspec.Struct, frozen=True):
    """Why a request got no answer at all (the batch was cancelled or expired first...)."""

    code: str
    message: str


class OutputLine(msgspec.Struct, frozen=True):
    """One line of an output or error file: exactly one per input line's ``custom_id``."""

    id: str
    custom_id: str
    response: OutputResponse | None
    error: OutputError | None


class FileStats(msgspec.Struct, frozen=True):
    """Lines, bytes and hex SHA-256 of a rendered output or error file."""

    lines: int
    bytes: int
    sha256: str


class BatchSummary(msgspec.Struct, frozen=True):
    """What rendering a terminal batch's output once found: its request counts and its two
    files. A terminal batch never changes, so it is kept until the batch expires."""

    completed: int
    failed: int
    output: FileStats
    errors: FileStats
