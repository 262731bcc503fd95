"""Reading jobs: the O(1) status from Redis (rebuilt from the store on a miss), result pages,
and the streamed JSONL artifact. Another tenant's job is a 404, never a 403."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import msgspec

from gateway import errors as E
from inferq import metrics
from schemas.api import EmbeddingOutput, FieldError, ResultItem, ResultsPage
from schemas.errors import ItemError
from schemas.states import ItemStatus
from store.jobstate import JobStateCache, JobStatusSnapshot
from store.rebuild import rebuild_job_cache
from store.results.base import ItemRecord, JobRecord, ResultStore

_OUTPUT = msgspec.msgpack.Decoder(EmbeddingOutput)
_JSON = msgspec.json.Encoder()


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return -1
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("i:"):
            raise ValueError(raw)
        return int(raw[2:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise E.InvalidRequest("cursor is not one this API returned",
                               errors=[FieldError("/cursor", "invalid cursor")]) from exc


def to_result_item(r: ItemRecord) -> ResultItem:
    if r.status == ItemStatus.SUCCEEDED:
        return ResultItem(index=r.index, status=ItemStatus.SUCCEEDED,
                          model_version=r.model_version, id=r.client_id,
                          output=_OUTPUT.decode(r.output) if r.output else None)
    return ResultItem(index=r.index, status=ItemStatus.FAILED, model_version=r.model_version,
                      id=r.client_id, error=ItemError(r.error_code or "internal_error",
                                                      r.error_message or "",
                                                      r.error_retryable))


class JobReader:
    def __init__(self, store: ResultStore, cache: JobStateCache):
        self._store = store
        self._cache = cache

    async def status(self, tenant: str, job_id: str) -> JobStatusSnapshot:
        snap = await self._cache.get_status(job_id)
        if snap is None:
            metrics.STATUS_STORE_READS.inc()
            job = await self._owned_job(tenant, job_id)
            await rebuild_job_cache(self._store, self._cache, job_id, job)
            snap = await self._cache.get_status(job_id)
            if snap is None:  # expired between the two reads
                raise E.JobNotFound(f"no job {job_id}")
        if snap.tenant != tenant or snap.expires_at <= time.time():
            raise E.JobNotFound(f"no job {job_id}")
        return snap

    async def _owned_job(self, tenant: str, job_id: str) -> JobRecord:
        job = await self._store.get_job(job_id)
        if job is None or job.tenant != tenant or job.expires_at <= time.time():
            raise E.JobNotFound(f"no job {job_id}")
        return job

    async def page(self, tenant: str, job_id: str, *, status: str | None, cursor: str | None,
                   limit: int) -> ResultsPage:
        await self._owned_job(tenant, job_id)
        after = decode_cursor(cursor)
        rows = await self._store.get_items(job_id, status=status, after_index=after,
                                           limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1].index) if more and rows else None
        return ResultsPage(job_id=job_id, items=[to_result_item(r) for r in rows],
                           next_cursor=nxt)

    async def jsonl(self, tenant: str, job_id: str) -> AsyncIterator[bytes]:
        """Checks ownership first (so errors are proper responses), then streams lines."""
        await self._owned_job(tenant, job_id)
        return self._lines(job_id)

    async def _lines(self, job_id: str) -> AsyncIterator[bytes]:
        buf = bytearray()
        async for r in self._store.iter_items(job_id, page_size=500):
            buf += _JSON.encode(to_result_item(r))
            buf += b"\n"
            if len(buf) >= 64 * 1024:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)
