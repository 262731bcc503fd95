"""``POST /v1/jobs/{job_id}/retry[?all_failed=true]``: a new job of exactly a terminal job's
failed items (those that failed with ``retryable: true``, or every failed one with
``all_failed``), read back from the parent's kept inputs (gateway/inputs.py).

The new job is the parent's pinned model version, priority, metadata (less an OpenAI batch's
record: a retry is not the batch) and timeout (the same duration, from now), with the
tenant's default webhook, and ``parent_job_id`` in its record, its Redis hash and its status
document. Its item ``k`` is the ``k``-th picked item in the
parent's index order: it keeps its id, and its results carry ``parent_index``. Its inputs
are written as its own object (so a retry can be retried in turn), then it is published
from there like a job from a file (gateway/filejobs.py: in the background, under a lease
another gateway takes over if this one dies), whatever its size.

An Idempotency-Key goes through the shared flow (``gateway.submit.Idempotency``), bound to
``RetryRequest``: the same key for the same parent and mode replays the retry's job (or
finishes a retry its first request left half-done); another parent or mode is a 422.
"""

from __future__ import annotations

import time
from array import array

import msgspec

from core import metrics
from core.config import Settings
from core.tenants import Tenant
from core.tracing import bind_fields
from gateway import errors as E
from gateway.admission import Admission
from gateway.artifact import JobNotTerminal
from gateway.filejobs import FileJobs
from gateway.inputs import InputStore, kept_name
from gateway.reads import JobReader
from gateway.submit import Submitted, Submitter, new_job_id, request_hash
from gateway.webhooks.subscribe import Webhook
from schemas.api import SubmitRequest
from schemas.openai_batch import BATCH_RECORD_KEY
from schemas.states import TERMINAL_JOB
from store.results.base import IdempotencyRecord, JobRecord


def _own_metadata(parent: JobRecord) -> dict | None:
    """The parent's metadata without the OpenAI batch record it may hold: the retry is a job
    of the tenant's, not the batch (whose output stays the parent's)."""
    if not parent.metadata or BATCH_RECORD_KEY not in parent.metadata:
        return parent.metadata
    return {k: v for k, v in parent.metadata.items() if k != BATCH_RECORD_KEY} or None


class RetryRequest(msgspec.Struct, frozen=True):
    """What a retry's Idempotency-Key is bound to: the parent and the mode."""

    retry_of: str
    all_failed: bool


class Retries:
    """Makes retry jobs of terminal jobs' failed items."""

    def __init__(self, settings: Settings, reader: JobReader, inputs: InputStore,
                 filejobs: FileJobs, submitter: Submitter, admission: Admission):
        self._s = settings
        self._reader = reader
        self._inputs = inputs
        self._filejobs = filejobs
        self._submitter = submitter
        self._admission = admission

    async def retry(self, tenant: Tenant, key_id: str, parent_id: str, *, all_failed: bool,
                    idempotency_key: str | None, traceparent: str | None = None) -> Submitted:
        """404 for another tenant's or an expired job; 409 ``job_not_terminal`` while it
        runs, ``inputs_not_kept``, or ``nothing_to_retry``; else the retry's job."""
        parent = await self._reader.owned_job(tenant.name, parent_id)
        snap = await self._reader.status(tenant.name, parent_id)
        if snap.status not in TERMINAL_JOB:
            raise JobNotTerminal("only a terminal job can be retried; wait for it to end",
                                 retry_after_s=2)
        self._submitter.resolve_model(f"{parent.model}@{parent.model_version}")
        webhook = self._submitter.webhook(tenant, SubmitRequest(model=parent.model))
        req = RetryRequest(retry_of=parent_id, all_failed=all_failed)
        idempotency = self._submitter.idempotency
        now = time.time()
        stored = await idempotency.stored(tenant, idempotency_key, now)
        if stored is not None:  # a retried request: admitted as a request, not as new items
            headers = await self._admission.write(tenant, key_id)
            return await self._replay(tenant, parent, req, stored, headers, traceparent,
                                      webhook)
        await self._admission.read(tenant, key_id)  # reading its failed rows is a results read
        picked = await self._pick(parent, all_failed, snap.failed)
        headers = await self._admission.submit(tenant, key_id, parent.model, len(picked))
        job_id = new_job_id()
        bind_fields(job_id=job_id)
        rhash = request_hash(req) if idempotency_key else None
        if idempotency_key:
            won = await idempotency.claim(tenant, idempotency_key, rhash, job_id, now)
            if won is not None:  # a concurrent duplicate won the claim
                return await self._replay(tenant, parent, req, won, headers, traceparent,
                                          webhook)
        job = self._record(job_id, parent, len(picked), now, idempotency_key, rhash)
        await self._create(job, parent.job_id, picked, traceparent, webhook)
        metrics.JOBS_SUBMITTED.labels(job.model, job.priority).inc()
        metrics.ITEMS_SUBMITTED.labels(job.model, job.priority).inc(job.total)
        return Submitted(job_id, replayed=False, headers=headers)

    async def _pick(self, parent: JobRecord, all_failed: bool, failed: int) -> array:
        """The parent's failed items to run again, by index (4 bytes each in memory): one
        pass over its ``failed`` rows, none when it has none."""
        if failed and await self._inputs.kept(parent.job_id) is None:
            raise E.InputsNotKept(f"the inputs of job {parent.job_id} were not kept; submit "
                                  "its failed items again")
        picked = array("I")
        if failed:
            async for item in self._reader.failed_items(parent):
                if all_failed or (item.error is not None and item.error.retryable):
                    picked.append(item.index)
        if not picked:
            which = "failed" if all_failed else "failed with retryable: true"
            raise E.NothingToRetry(f"no item of job {parent.job_id} {which}"
                                   + ("" if all_failed else "; all_failed=true retries "
                                      "every failed item"))
        return picked

    def _record(self, job_id: str, parent: JobRecord, total: int, now: float,
                key: str | None, rhash: str | None) -> JobRecord:
        timeout = parent.deadline - parent.created_at if parent.deadline else None
        return JobRecord(
            job_id=job_id, tenant=parent.tenant, model=parent.model,
            model_version=parent.model_version, priority=parent.priority, total=total,
            chunks=-(-total // self._s.chunk_items), created_at=now,
            expires_at=now + self._s.result_ttl_s,
            deadline=now + timeout if timeout else None, metadata=_own_metadata(parent),
            idempotency_key=key, request_hash=rhash, parent_job_id=parent.job_id)

    async def _create(self, job: JobRecord, parent_id: str, picked: array,
                      traceparent: str | None, webhook: Webhook | None) -> None:
        """The retry's inputs first (a recorded job has them), then the job, published in
        the background."""
        written = await self._inputs.keep_retry(job, parent_id, picked)
        if written != job.total:  # the parent's inputs are shorter than its results
            raise E.ApiError(f"job {parent_id} kept {written} of {job.total} failed items' "
                             "inputs")
        await self._filejobs.launch(job, kept_name(job.job_id), traceparent, webhook)

    async def _replay(self, tenant: Tenant, parent: JobRecord, req: RetryRequest,
                      stored: IdempotencyRecord, headers: dict[str, str],
                      traceparent: str | None, webhook: Webhook | None) -> Submitted:
        done, job = await self._submitter.idempotency.replay(
            req, stored, headers, time.time(), queued=self._filejobs.pending)
        if done is not None:
            return done
        # The first request died part-way: finish its retry (every step is idempotent).
        if job is None or await self._inputs.kept(job.job_id) is None:
            picked = await self._pick(parent, req.all_failed, parent.total)
            job = job or self._record(stored.job_id, parent, len(picked), stored.created_at,
                                      stored.key, stored.request_hash)
            await self._create(job, parent.job_id, picked, traceparent, webhook)
        else:
            await self._filejobs.launch(job, kept_name(job.job_id), traceparent, webhook)
        return Submitted(job.job_id, replayed=True, headers=headers)
