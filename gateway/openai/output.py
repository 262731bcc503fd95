"""Rendering a terminal batch's output and error files from its native job's results.

Nothing is stored: the input file's requests (their ``custom_id``s, how many texts each, the
encoding asked) are read beside the job's results in index order, a page at a time, and each
request becomes one line of one of the two files (gateway/openai/outputlines.py). Memory is one
results page and one object chunk, whatever the batch's size.

The first look at a terminal batch that needs more than its item counts (the bytes of a file,
or the request counts of a batch with multi-text requests and some failures) renders both
files once, counting and hashing, and keeps that summary in Redis until the batch expires:
a terminal batch never changes.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator

import msgspec
from redis.asyncio import Redis

from gateway.openai.files import BatchFiles
from gateway.openai.outputlines import OUTPUT, request_line
from gateway.reads import JobReader
from schemas.api import ResultItem
from schemas.errors import ErrorCode, ItemError
from schemas.openai_batch import BatchSummary, FileStats
from schemas.states import ItemStatus
from store.redis_errors import redis_errors
from store.results.base import JobRecord

PAGE = 256
"""Item results read at a time (384 floats each)."""
_PIECE = 64 * 1024
_SUMMARY = msgspec.json.Decoder(BatchSummary)


class _Items:
    """A job's results in index order, taken a request at a time. An index without a result
    (none is expected once the job is terminal) is reported failed, never skipped, so that
    requests and items cannot drift apart."""

    def __init__(self, reader: JobReader, tenant: str, job: JobRecord):
        self._reader, self._tenant, self._job = reader, tenant, job
        self._page: deque[ResultItem] = deque()
        self._cursor: str | None = None
        self._done = False
        self._next = 0

    async def take(self, k: int) -> list[ResultItem]:
        out: list[ResultItem] = []
        while len(out) < k:
            if not self._page and not self._done:
                await self._fill()
            if self._page and self._page[0].index < self._next:
                self._page.popleft()  # not expected: an index twice
                continue
            if self._page and self._page[0].index == self._next:
                out.append(self._page.popleft())
            else:
                out.append(ResultItem(
                    index=self._next, status=ItemStatus.FAILED,
                    model_version=self._job.model_version,
                    error=ItemError.of(ErrorCode.INTERNAL_ERROR, "no result was recorded")))
            self._next += 1
        return out

    async def _fill(self) -> None:
        page = await self._reader.page(self._tenant, self._job.job_id, status=None,
                                       cursor=self._cursor, limit=PAGE)
        self._page.extend(page.items)
        self._cursor = page.next_cursor
        self._done = page.next_cursor is None


class BatchOutput:
    """Renders a terminal batch's files and keeps their summary."""

    def __init__(self, reader: JobReader, files: BatchFiles, redis: Redis,
                 prefix: str = "inferq:openai:summary:"):
        self._reader = reader
        self._files = files
        self._redis = redis
        self._prefix = prefix

    async def lines(self, tenant: str, job: JobRecord, input_file_id: str,
                    kind: str) -> AsyncIterator[bytes]:
        """The output (``kind`` "output") or error file, in pieces of about 64 KiB."""
        buf = bytearray()
        async for ok, line in self._requests(tenant, job, input_file_id):
            if ok == (kind == OUTPUT):
                buf += line
                if len(buf) >= _PIECE:
                    yield bytes(buf)
                    buf.clear()
        if buf:
            yield bytes(buf)

    async def summary(self, tenant: str, job: JobRecord, input_file_id: str) -> BatchSummary:
        """Request counts and both files' lines, bytes and SHA-256; rendered once."""
        key = self._prefix + job.job_id
        with redis_errors("batch summary get"):
            raw = await self._redis.get(key)
        if raw is not None:
            return _SUMMARY.decode(raw)
        lines, size = {True: 0, False: 0}, {True: 0, False: 0}
        sha = {True: hashlib.sha256(), False: hashlib.sha256()}
        async for ok, line in self._requests(tenant, job, input_file_id):
            lines[ok] += 1
            size[ok] += len(line)
            sha[ok].update(line)
        s = BatchSummary(
            completed=lines[True], failed=lines[False],
            output=FileStats(lines[True], size[True], sha[True].hexdigest()),
            errors=FileStats(lines[False], size[False], sha[False].hexdigest()))
        with redis_errors("batch summary set"):
            await self._redis.set(key, msgspec.json.encode(s), pxat=int(job.expires_at * 1000))
        return s

    async def _requests(self, tenant: str, job: JobRecord,
                        input_file_id: str) -> AsyncIterator[tuple[bool, bytes]]:
        model = f"{job.model}@{job.model_version}"
        items = _Items(self._reader, tenant, job)
        n = 0
        async for shape in self._files.shapes(input_file_id):
            yield request_line(job.job_id, n, shape, await items.take(shape.inputs), model)
            n += 1
