"""The verifiable, resumable ``results.jsonl`` of a terminal job.

A terminal job never changes, so its artifact is a fixed byte string: the first request after
the end renders it once without keeping it (O(64 KiB) memory), counting lines and bytes and
hashing them, and keeps that manifest in Redis until the job expires. Every later answer
carries ``Content-Length``, a strong ``ETag`` and ``Repr-Digest: sha-256=:…:`` (RFC 9530)
from it, and a ``Range`` (one range, RFC 9110) is served as ``206`` by rendering again and
skipping to the range. The cost: the first download of a terminal job renders it twice; a
resumed download renders up to its offset again.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from litestar import Response
from litestar.response import Stream
from redis.asyncio import Redis

from gateway import errors as E
from gateway.reads import JobReader
from schemas.api import FieldError
from schemas.errors import ErrorCode
from schemas.files import ResultsManifest
from schemas.states import TERMINAL_JOB
from store.redis_errors import redis_errors

_MANIFEST = msgspec.json.Decoder(ResultsManifest)


def repr_digest(sha256_hex: str) -> str:
    """The ``Repr-Digest`` field value (RFC 9530) of a SHA-256 given in hex."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode() + ":"


def etag_of(m: ResultsManifest) -> str:
    """A strong validator: the artifact's digest."""
    return f'"{m.sha256[:40]}"'


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range of the artifact."""

    start: int
    end: int


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range of a ``size``-byte representation; None to serve it whole (no,
    several or a non-bytes range). Raises 416 when the one range lies outside."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":  # the last ``last`` bytes
            n = int(last)
            if n <= 0:
                raise ValueError
            start, end = max(0, size - n), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            if start > end and start < size:
                return None  # invalid: ignore the header (RFC 9110 14.1.1)
    except ValueError:
        return None
    if start >= size or size == 0:
        raise RangeNotSatisfiable(f"the range starts past the artifact's {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"},
                                  errors=[FieldError("header:Range", "not satisfiable")])
    return ByteRange(start, end)


async def cut(pieces: AsyncIterator[bytes], r: ByteRange) -> AsyncIterator[bytes]:
    """The bytes ``r`` of a stream of pieces."""
    pos = 0
    async for piece in pieces:
        lo, hi = pos, pos + len(piece)
        pos = hi
        if hi <= r.start:
            continue
        yield piece[max(0, r.start - lo):min(len(piece), r.end + 1 - lo)]
        if hi > r.end:
            return


class Artifacts:
    """Manifests of terminal jobs' artifacts, computed once and kept in Redis."""

    def __init__(self, reader: JobReader, redis: Redis, prefix: str = "inferq:manifest:"):
        self._reader = reader
        self._redis = redis
        self._prefix = prefix

    async def manifest(self, tenant: str, job_id: str) -> ResultsManifest | None:
        """The artifact's manifest once the job is terminal; None before."""
        snap = await self._reader.status(tenant, job_id)
        if snap.status not in TERMINAL_JOB:
            return None
        key = self._prefix + job_id
        with redis_errors("manifest get"):
            raw = await self._redis.get(key)
        if raw is not None:
            return _MANIFEST.decode(raw)
        sha = hashlib.sha256()
        size = lines = 0
        async for piece in await self._reader.jsonl(tenant, job_id):
            sha.update(piece)
            size += len(piece)
            lines += piece.count(b"\n")
        m = ResultsManifest(lines=lines, bytes=size, sha256=sha.hexdigest(),
                            succeeded=snap.succeeded, failed=snap.failed)
        with redis_errors("manifest set"):
            await self._redis.set(key, msgspec.json.encode(m),
                                  pxat=int(snap.expires_at * 1000))
        return m

    async def required(self, tenant: str, job_id: str) -> ResultsManifest:
        """The manifest, or 409 while the job runs (its artifact is not final yet)."""
        m = await self.manifest(tenant, job_id)
        if m is None:
            raise JobNotTerminal("the job is not terminal yet; its artifact is not final",
                                 retry_after_s=2)
        return m


class RangeNotSatisfiable(E.ApiError):
    """416: the ``Range`` lies outside the artifact."""

    status_code, code, title = 416, ErrorCode.RANGE_NOT_SATISFIABLE, "Range not satisfiable"


class JobNotTerminal(E.ApiError):
    """409 (retryable): the request needs a terminal job."""

    status_code, code, retryable, title = 409, ErrorCode.JOB_NOT_TERMINAL, True, "Job not terminal"


async def respond(artifacts: Artifacts, tenant: str, job_id: str, request_headers,
                  headers: dict[str, str]) -> Response:
    """``results.jsonl``: streamed without length while the job runs; once terminal, with
    its length, ETag and digest, ``304`` for a matching ``If-None-Match`` and ``206`` for a
    ``Range`` (honoured only while ``If-Range``, if sent, still names this artifact)."""
    m = await artifacts.manifest(tenant, job_id)
    if m is None:
        lines = await artifacts._reader.jsonl(tenant, job_id)
        return Stream(lines, media_type=NDJSON, headers=headers)
    etag = etag_of(m)
    h = {**headers, "ETag": etag, "Repr-Digest": repr_digest(m.sha256),
         "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    inm = request_headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(b"", status_code=304, headers=h)
    if_range = request_headers.get("if-range")
    r = parse_range(request_headers.get("range"), m.bytes)
    if r is not None and if_range is not None and if_range.strip() != etag:
        r = None  # the client's partial copy is of another artifact: send it all
    lines = await artifacts._reader.jsonl(tenant, job_id)
    if r is None:
        h["Content-Length"] = str(m.bytes)
        return Stream(lines, media_type=NDJSON, headers=h)
    h["Content-Range"] = f"bytes {r.start}-{r.end}/{m.bytes}"
    h["Content-Length"] = str(r.end - r.start + 1)
    return Stream(cut(lines, r), status_code=206, media_type=NDJSON, headers=h)


NDJSON = "application/x-ndjson"
