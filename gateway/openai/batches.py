"""OpenAI batches as native file jobs: ``POST /openai/v1/batches`` submits the batch file's
native twin (gateway/openai/files.py) as a job at ``batch`` priority, through the same
admission, quotas, fair share and ``Idempotency-Key`` handling as ``POST /v1/jobs`` with an
``input_file_id``. The completion window (24 h) is the job's deadline: what is not done by
then fails ``batch_expired``.

The batch is the job (``batch_<job_id>``); its own fields live in the job's metadata, so they
are as durable as the job and expire with it. The job's results API
(``GET /v1/jobs/{job_id}/results``, items carrying their request's ``custom_id``) serves a
batch's results while it runs; its output and error files appear when it ends.
"""

from __future__ import annotations

import asyncio

import msgspec

from core.tenants import Tenant
from gateway import errors as E
from gateway.files import FileNotFound
from gateway.openai.batchfile import ENDPOINT
from gateway.openai.batchindex import BatchIndex
from gateway.openai.batchview import known_counts, to_batch
from gateway.openai.errors import UnsupportedParameter
from gateway.openai.files import BatchFiles
from gateway.openai.output import BatchOutput
from gateway.openai.outputlines import OUTPUT, batch_id, file_of, job_of
from gateway.services import GatewayServices
from gateway.submit import Submitted
from schemas.api import FieldError, SubmitRequest
from schemas.errors import ErrorCode
from schemas.openai_batch import (
    BATCH_RECORD_KEY,
    Batch,
    BatchCreateRequest,
    BatchList,
    BatchRecord,
    BatchRequestCounts,
    OpenAIFile,
)
from schemas.states import Priority
from store.results.base import JobRecord

COMPLETION_WINDOWS = {"24h": 86400.0}
"""The completion windows offered (OpenAI's one), as the job's ``timeout_s``."""
RECORD_KEY = BATCH_RECORD_KEY


class BatchNotFound(E.ApiError):
    """404: unknown, expired or another tenant's batch (or a native job that is none)."""

    status_code, code, title = 404, "batch_not_found", "Batch not found"  # type: ignore[assignment]


class Batches:
    """Create, read, cancel and list the tenant's batches; find their output files."""

    def __init__(self, svc: GatewayServices, files: BatchFiles, output: BatchOutput,
                 index: BatchIndex):
        self._svc = svc
        self._files = files
        self.output = output
        self._index = index

    async def create(self, tenant: Tenant, key_id: str, req: BatchCreateRequest,
                     idempotency_key: str | None, traceparent: str | None
                     ) -> tuple[Batch, Submitted]:
        """Queue the batch file's texts as one native job; a repeated Idempotency-Key with
        the same body answers the first batch."""
        if req.endpoint != ENDPOINT:
            raise UnsupportedParameter(
                f"`endpoint` {req.endpoint!r} is not offered: batches here run {ENDPOINT}",
                errors=[FieldError("/endpoint", f"{ENDPOINT} only")])
        window = COMPLETION_WINDOWS.get(req.completion_window)
        if window is None:
            raise UnsupportedParameter(
                f"`completion_window` {req.completion_window!r} is not offered: send "
                f"{' or '.join(map(repr, COMPLETION_WINDOWS))}",
                errors=[FieldError("/completion_window", "24h only")])
        meta = await self._files.meta(tenant.name, req.input_file_id)
        record = BatchRecord(input_file_id=req.input_file_id, endpoint=req.endpoint,
                             completion_window=req.completion_window, requests=meta.requests,
                             metadata=req.metadata)
        job = SubmitRequest(model=meta.model, input_file_id=meta.native_file_id,
                            priority=Priority.BATCH, timeout_s=window,
                            metadata={RECORD_KEY: msgspec.to_builtins(record)})
        assert self._svc.filejobs is not None  # wired by GatewayServices.assemble
        done = await self._svc.filejobs.submit(tenant, key_id, job, idempotency_key,
                                               traceparent=traceparent)
        await self._index.add(tenant.name, done.job_id)
        return await self.get(tenant.name, batch_id(done.job_id)), done

    async def get(self, tenant: str, batch: str) -> Batch:
        """The tenant's batch; 404 for any other id."""
        job, record = await self._job(tenant, batch)
        return await self._view(tenant, job, record)

    async def cancel(self, tenant: str, batch: str) -> Batch:
        """End the batch now: requests not yet run fail ``batch_cancelled``; idempotent, and
        an ended batch is answered as it is."""
        job, record = await self._job(tenant, batch)
        await self._svc.ender.end_now(job, ErrorCode.CANCELLED)
        return await self._view(tenant, job, record)

    async def list(self, tenant: str, after: str | None, limit: int) -> BatchList:
        """A page of the tenant's live batches, newest first."""
        ids, more = await self._index.page(tenant, job_of(after) if after else None, limit)
        found = await asyncio.gather(*(self._maybe(tenant, batch_id(i)) for i in ids))
        data = [b for b in found if b is not None]
        return BatchList(data=data, has_more=more, first_id=data[0].id if data else None,
                         last_id=data[-1].id if data else None)

    async def output_file(self, tenant: str, file: str, *, describe: bool = True
                          ) -> tuple[OpenAIFile | None, JobRecord, str]:
        """An ended batch's output or error file: its description (rendering the output once
        if it was never rendered; None unless ``describe``), the batch's job and the batch
        file's id; 404 unless the batch ended with such a file."""
        parsed = file_of(file)
        if parsed is None:
            raise FileNotFound(f"no file {file}")
        job_id, kind = parsed
        try:
            job, record = await self._job(tenant, batch_id(job_id))
        except BatchNotFound:
            raise FileNotFound(f"no file {file}") from None
        batch = await self._view(tenant, job, record)
        if file not in (batch.output_file_id, batch.error_file_id):
            raise FileNotFound(f"no file {file}: the batch has not ended, or has no such file")
        if not describe:
            return None, job, record.input_file_id
        s = await self.output.summary(tenant, job, record.input_file_id)
        stats = s.output if kind == OUTPUT else s.errors
        ended = batch.completed_at or batch.cancelled_at or batch.expired_at or batch.failed_at
        return OpenAIFile(id=file, bytes=stats.bytes, created_at=ended or batch.created_at,
                          filename=f"{batch.id}_{kind}.jsonl", purpose="batch_output",
                          expires_at=int(job.expires_at)), job, record.input_file_id

    async def _maybe(self, tenant: str, batch: str) -> Batch | None:
        try:
            return await self.get(tenant, batch)
        except BatchNotFound:  # expired since it was indexed
            return None

    async def _job(self, tenant: str, batch: str) -> tuple[JobRecord, BatchRecord]:
        job_id = job_of(batch)
        try:
            job = await self._svc.reader.owned_job(tenant, job_id) if job_id else None
        except E.JobNotFound:
            job = None
        raw = (job.metadata or {}).get(RECORD_KEY) if job is not None else None
        if job is None or raw is None:
            raise BatchNotFound(f"no batch {batch}")
        return job, msgspec.convert(raw, BatchRecord)

    async def _view(self, tenant: str, job: JobRecord, record: BatchRecord) -> Batch:
        snap = await self._svc.reader.status(tenant, job.job_id)
        counts = known_counts(record, snap)
        if counts is None:
            s = await self.output.summary(tenant, job, record.input_file_id)
            counts = BatchRequestCounts(record.requests, s.completed, s.failed)
        return to_batch(job, record, snap, counts)
