"""Uploaded input files: the API's view of one, the typed form of one of its lines, and the
metadata kept with its bytes in the object store (and with the inputs kept for a job)."""

from __future__ import annotations

import msgspec

from schemas.api import InputItem


class FileObject(msgspec.Struct, frozen=True):
    """``POST /v1/files`` and ``GET /v1/files/{file_id}``: what was stored and until when."""

    file_id: str
    lines: int
    bytes: int
    sha256: str
    """Hex SHA-256 of the uploaded bytes, exactly as received."""
    created_at: str
    expires_at: str


class FileMeta(msgspec.Struct, frozen=True):
    """Kept in the object store beside a file's bytes (its description): the owner, the
    validated counts and the expiry. Bus-side data: unknown fields are tolerated."""

    tenant: str
    lines: int
    bytes: int
    sha256: str
    created_at: float
    expires_at: float
    max_line_bytes: int = 0
    """The longest line, so that a job can refuse a file whose lines cannot fit a chunk."""
    held_until: float = 0.0
    """The expiry of the latest job made from the file: a DELETE before then hides the file
    but leaves its bytes, which that job's retries read (gateway/inputs.py)."""


class KeptInputs(msgspec.Struct, frozen=True):
    """Kept beside a job's inputs (object ``job-<job_id>``) for its retries: whose they are,
    how many lines, until when. Bus-side data: unknown fields are tolerated."""

    tenant: str
    job_id: str
    lines: int
    expires_at: float
    file_id: str | None = None
    """A job from a file: the object is a second name of that file's bytes, not a copy."""
    parent_job_id: str | None = None
    """A retry: the job whose failed items these are (``job-<job_id>.parents`` holds each
    line's index in it)."""


FileLine = InputItem | str
"""One line of an input file: ``{"text", "id"?}`` or a bare JSON string (the text)."""

LINE_DECODER = msgspec.json.Decoder(FileLine)
META_DECODER = msgspec.json.Decoder(FileMeta)
KEPT_DECODER = msgspec.json.Decoder(KeptInputs)


class ResultsManifest(msgspec.Struct, frozen=True):
    """``GET /v1/jobs/{job_id}/results/manifest``: what a terminal job's ``results.jsonl``
    holds, to check a download against (``sha256`` is hex; ``Repr-Digest`` carries it too)."""

    lines: int
    bytes: int
    sha256: str
    succeeded: int
    failed: int
