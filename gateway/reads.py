"""Reading jobs: the O(1) status from Redis (rebuilt from the store on a miss), result pages,
the streamed JSONL artifact and the tenant's job list. Another tenant's job is a 404, never
a 403; so is an expired one (after the purge it is indistinguishable from one that never
existed, so it is a 404 before the purge too)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec

from core import metrics
from gateway import errors as E
from gateway.inputs import InputStore
from gateway.jobend import JOB_LEVEL
from gateway.queue import QueueView
from schemas.api import JobList, ResultItem, ResultsPage
from schemas.errors import ITEM_RETRYABLE, ErrorCode, ItemError
from schemas.states import ItemStatus, JobStatus
from store.jobstate import JobStateCache, JobStatusSnapshot
from store.rebuild import rebuild_job_cache
from store.results.base import (
    ItemRecord,
    JobRecord,
    ResultStore,
    decode_index_cursor,
    encode_index_cursor,
)
from store.results.codec import decode_output, is_simulated

_JSON = msgspec.json.Encoder()


def to_result_item(r: ItemRecord) -> ResultItem:
    """The API's view of a stored item row: its decoded output, or its error."""
    if r.status == ItemStatus.SUCCEEDED:
        return ResultItem(index=r.index, status=ItemStatus.SUCCEEDED,
                          model_version=r.model_version, id=r.client_id,
                          output=decode_output(r.output) if r.output else None,
                          simulated=bool(r.output) and is_simulated(r.output))
    return ResultItem(index=r.index, status=ItemStatus.FAILED, model_version=r.model_version,
                      id=r.client_id, error=ItemError(r.error_code or ErrorCode.INTERNAL_ERROR,
                                                      r.error_message or "",
                                                      r.error_retryable))


class JobReader:
    """Every read of a job, scoped to the calling tenant: status, result pages, the JSONL
    artifact and the job list."""

    def __init__(self, store: ResultStore, cache: JobStateCache,
                 queue: QueueView | None = None, inputs: InputStore | None = None):
        self._store = store
        self._cache = cache
        self._queue = queue
        self._inputs = inputs
        """A retry's results carry each item's ``parent_index`` from its kept inputs."""

    async def status(self, tenant: str, job_id: str) -> JobStatusSnapshot:
        """The job's status from Redis, rebuilt from the store on a miss; 404 unless the
        tenant's and live."""
        snap = await self._cache.get_status(job_id)
        if snap is None:
            metrics.STATUS_STORE_READS.inc()
            job = await self.owned_job(tenant, job_id)
            await rebuild_job_cache(self._store, self._cache, job_id, job)
            snap = await self._cache.get_status(job_id)
            if snap is None:  # expired between the two reads
                raise E.JobNotFound(f"no job {job_id}")
        if snap.tenant != tenant or snap.expires_at <= time.time():
            raise E.JobNotFound(f"no job {job_id}")
        return self._queue.annotate(snap) if self._queue is not None else snap

    async def owned_job(self, tenant: str, job_id: str) -> JobRecord:
        """The tenant's live job; 404 for an unknown, expired or another tenant's job."""
        job = await self._store.get_job(job_id)
        if job is None or job.tenant != tenant or job.expires_at <= time.time():
            raise E.JobNotFound(f"no job {job_id}")
        return job

    async def page(self, tenant: str, job_id: str, *, status: ItemStatus | None,
                   cursor: str | None, limit: int) -> ResultsPage:
        """Up to ``limit`` item results after ``cursor`` in index order (only ``status`` ones
        if given); items a job-level end failed are reported before their rows exist."""
        job = await self.owned_job(tenant, job_id)
        after = decode_index_cursor(cursor)
        ended = await self._ended_by(job)
        if ended is None:  # the store filters and pages by itself
            rows = await self._store.get_items(job_id, status=status, after_index=after,
                                               limit=limit + 1)
            items = [to_result_item(r) for r in rows]
        else:
            items = []
            async for item in self._items(job, after, ended, page_size=limit + 1):
                if status is None or item.status == status:
                    items.append(item)
                    if len(items) > limit:
                        break
        more = len(items) > limit
        items = await self._with_parents(job, items[:limit])
        nxt = encode_index_cursor(items[-1].index) if more and items else None
        return ResultsPage(job_id=job_id, items=items, next_cursor=nxt)

    async def _with_parents(self, job: JobRecord, items: list[ResultItem]) -> list[ResultItem]:
        """A retry's items with their index in the parent job; others as they are."""
        if job.parent_job_id is None or self._inputs is None or not items:
            return items
        parents = await self._inputs.parent_indexes(job.job_id, [i.index for i in items])
        return [msgspec.structs.replace(i, parent_index=p) for i, p in zip(items, parents,
                                                                           strict=True)]

    async def failed_items(self, job: JobRecord) -> AsyncIterator[ResultItem]:
        """Every failed item of the job in index order (those a job-level end failed
        included, before their rows are written), O(page) memory."""
        ended = await self._ended_by(job)
        if ended is not None:
            async for item in self._items(job, -1, ended):
                if item.status == ItemStatus.FAILED:
                    yield item
            return
        after = -1
        while True:
            rows = await self._store.get_items(job.job_id, status=ItemStatus.FAILED,
                                               after_index=after, limit=1000)
            for r in rows:
                yield to_result_item(r)
            if len(rows) < 1000:
                return
            after = rows[-1].index

    async def _ended_by(self, job: JobRecord) -> ItemError | None:
        """The item error of a job-level end (cancel, deadline, ...) once Redis has ended the
        job, else None. Until every row is written, an item without a row is reported failed
        with it: exactly what Redis counted (and what a cache rebuild derives, too)."""
        snap = await self.status(job.tenant, job.job_id)
        if snap.status != JobStatus.FAILED or snap.error is None:
            return None
        if snap.error.code not in JOB_LEVEL:
            return None
        code = ErrorCode(snap.error.code)
        return ItemError(code.value, snap.error.message, ITEM_RETRYABLE.get(code, False))

    async def _items(self, job: JobRecord, after: int, ended: ItemError | None, *,
                     page_size: int = 500) -> AsyncIterator[ResultItem]:
        """Every item after ``after`` in index order: its row, or (``ended``) the failure
        the job-level end gave it when its row is not written yet."""
        nxt = after + 1
        while True:  # keyset pages over the rows: O(page) memory whatever the job's size
            rows = await self._store.get_items(job.job_id, status=None, after_index=nxt - 1,
                                               limit=page_size)
            counted_failed = await self._counted_failed(job.job_id, rows, ended)
            for r in rows:
                if ended is not None:
                    for index in range(nxt, r.index):
                        yield ResultItem(index=index, status=ItemStatus.FAILED,
                                         model_version=job.model_version, error=ended)
                if r.index in counted_failed:
                    yield ResultItem(index=r.index, status=ItemStatus.FAILED,
                                     model_version=job.model_version, id=r.client_id,
                                     error=ended)
                else:
                    yield to_result_item(r)
                nxt = r.index + 1
            if len(rows) < page_size:
                break
        if ended is not None:
            for index in range(nxt, job.total):
                yield ResultItem(index=index, status=ItemStatus.FAILED,
                                 model_version=job.model_version, error=ended)

    async def _counted_failed(self, job_id: str, rows: list[ItemRecord],
                              ended: ItemError | None) -> set[int]:
        """After a job-level end, the rows that say succeeded although Redis counted the item
        failed: a batch wrote them between the end's count and its own (refused) one, and the
        end has not replaced them yet. They are reported as Redis counted them."""
        if ended is None:
            return set()
        won = [r.index for r in rows if r.status == ItemStatus.SUCCEEDED]
        marks = await self._cache.marks_of(job_id, won)
        return {i for i, status in marks.items() if status == ItemStatus.FAILED}

    async def list(self, tenant: str, *, cursor: str | None, limit: int) -> JobList:
        """A page of the tenant's live jobs, newest first, as status documents (from Redis,
        rebuilt from the store where the cache lost them)."""
        jobs, nxt = await self._store.list_jobs(tenant, cursor=cursor, limit=limit)
        now = time.time()
        docs = []
        for job in jobs:
            if job.tenant != tenant or job.expires_at <= now:
                continue
            try:
                docs.append((await self.status(tenant, job.job_id)).to_doc())
            except E.JobNotFound:  # expired between the two reads
                continue
        return JobList(jobs=docs, next_cursor=nxt)

    async def jsonl(self, tenant: str, job_id: str) -> AsyncIterator[bytes]:
        """Checks ownership first (so errors are proper responses), then streams lines."""
        job = await self.owned_job(tenant, job_id)
        return self._lines(job, await self._ended_by(job))

    async def _lines(self, job: JobRecord, ended: ItemError | None) -> AsyncIterator[bytes]:
        buf = bytearray()
        batch: list[ResultItem] = []
        async for item in self._items(job, -1, ended):
            batch.append(item)
            if len(batch) < 500:
                continue
            for one in await self._with_parents(job, batch):
                buf += _JSON.encode(one)
                buf += b"\n"
            batch.clear()
            if len(buf) >= 64 * 1024:
                yield bytes(buf)
                buf.clear()
        for one in await self._with_parents(job, batch):
            buf += _JSON.encode(one)
            buf += b"\n"
        if buf:
            yield bytes(buf)
