"""Job inputs kept for retries (``POST /v1/jobs/{id}/retry``), in the files bucket
(``INFERQ_FILES_BUCKET``) beside uploaded files:

- ``job-<job_id>``: the job's inputs, one JSONL line per item in index order, each line as an
  input file holds it (a JSON string, or ``{"text", "id"}``). An inline job's is a copy
  written at submit, concurrently with its chunks; a job from a file gets a second name of
  the file's bytes (no copy), and the file is held so that a DELETE leaves its bytes while
  the job keeps results; a retry's is its own items, which its chunks are published from.
- ``job-<job_id>.parents``: a retry's items' indexes in its parent, uint32 little-endian.

A file job's and a retry's are written before the job is recorded; an inline job's while its
chunks are published, before it is marked published (so a published job has them, with
``keep_inputs`` on; one whose submission was cut short is completed by a retry of the
request, or failed by the sweeper). They live for the bucket's age limit (twice the
results' retention) and never change.
"""

from __future__ import annotations

import sys
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator

import msgspec

from gateway import errors as E
from gateway.files import FileNotFound, FileService
from schemas.api import InputItem
from schemas.files import KEPT_DECODER, KeptInputs
from store.objects import ObjectGone
from store.results.base import JobRecord

_ENCODER = msgspec.json.Encoder()


def kept_name(job_id: str) -> str:
    """The object holding a job's inputs."""
    return f"job-{job_id}"


def parents_name(job_id: str) -> str:
    """The object holding a retry's parent indexes."""
    return f"job-{job_id}.parents"


def input_lines(items: list[InputItem]) -> bytes:
    """Items as the lines of an input file: a bare JSON string where there is no id."""
    return _ENCODER.encode_lines([it if it.id is not None else it.text for it in items])


def _packed(indexes: array) -> bytes:
    data = array("I", indexes)
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


class InputStore:
    """Writes and reads back jobs' kept inputs; a retry's parent indexes are cached in
    memory (immutable, so never stale), least recently used first out."""

    def __init__(self, files: FileService, *, enabled: bool = True,
                 cache_bytes: int = 64 * 1024 * 1024):
        self._files = files
        self.bucket = files.bucket
        self.enabled = enabled
        self._cache: OrderedDict[str, array] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    @staticmethod
    def _describe(job: JobRecord, lines: int, **extra: str | None) -> str:
        return _ENCODER.encode(KeptInputs(tenant=job.tenant, job_id=job.job_id, lines=lines,
                                          expires_at=job.expires_at, **extra)).decode()

    async def keep(self, job: JobRecord, items: list[InputItem], *, again: bool = False) -> int:
        """Keep an inline job's inputs; the bytes kept (0 when off, or ``again`` — a replay
        completing a submission — finds them kept already)."""
        if not self.enabled or (again and await self.bucket.info(kept_name(job.job_id))):
            return 0
        data = input_lines(items)
        await self.bucket.put(kept_name(job.job_id), data, self._describe(job, len(items)))
        return len(data)

    async def keep_file(self, job: JobRecord, file_id: str) -> None:
        """A job from a file: hold the file until the job expires and name its bytes after
        the job (no copy). 404 if the file was deleted meanwhile."""
        info = await self._files.hold(file_id, job.expires_at)
        await self.bucket.alias(kept_name(job.job_id), info,
                                self._describe(job, job.total, file_id=file_id))

    async def kept(self, job_id: str) -> KeptInputs | None:
        """What is kept of the job's inputs; None when nothing is."""
        info = await self.bucket.info(kept_name(job_id))
        return KEPT_DECODER.decode(info.description) if info and info.description else None

    async def lines(self, job_id: str) -> AsyncIterator[bytes]:
        """The job's kept input lines in index order."""
        async for raw in self._files.lines(kept_name(job_id)):
            yield raw

    async def keep_retry(self, job: JobRecord, parent_id: str, picked: array) -> int:
        """Write a retry's inputs: the parent's lines at ``picked`` (ascending indexes), as
        they are, then their parent indexes; returns the lines written (fewer than picked
        only if the parent's inputs are shorter than its results, which cannot be)."""
        writer = self.bucket.writer(kept_name(job.job_id))
        try:
            written = await self._copy(parent_id, picked, writer)
            await writer.commit(self._describe(job, written, parent_job_id=parent_id))
        except BaseException as exc:
            await writer.abort()
            if isinstance(exc, FileNotFound | ObjectGone):  # aged out: the parent is too
                raise E.InputsNotKept(f"the inputs of job {parent_id} are gone") from None
            raise
        await self.bucket.put(parents_name(job.job_id), _packed(picked[:written]),
                              self._describe(job, written, parent_job_id=parent_id))
        return written

    async def _copy(self, parent_id: str, picked: array, writer) -> int:
        at = written = 0
        buf = bytearray()
        async for raw in self.lines(parent_id):
            if written == len(picked):
                break
            if at == picked[written]:
                buf += raw + b"\n"
                written += 1
                if len(buf) >= 1 << 17:
                    await writer.write(bytes(buf))
                    buf.clear()
            at += 1
        if buf:
            await writer.write(bytes(buf))
        return written

    async def parent_indexes(self, job_id: str, indexes: list[int]) -> list[int | None]:
        """A retry's items' indexes in its parent (None for an index out of range)."""
        table = self._cache.get(job_id)
        if table is None:
            table = await self._load_parents(job_id)
        else:
            self._cache.move_to_end(job_id)
        return [table[i] if 0 <= i < len(table) else None for i in indexes]

    async def _load_parents(self, job_id: str) -> array:
        table = array("I")
        info = await self.bucket.info(parents_name(job_id))
        if info is not None:
            data = bytearray()
            async for piece in self.bucket.read(info):
                data += piece
            table.frombytes(bytes(data))
            if sys.byteorder != "little":
                table.byteswap()
        size = table.itemsize * len(table)
        while self._cache and self._cached + size > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.itemsize * len(old)
        if size <= self._cache_bytes:
            self._cache[job_id] = table
            self._cached += size
        return table

