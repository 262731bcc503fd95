"""Jobs made from an uploaded file: up to ``max_file_lines`` items, answered ``202`` at once,
their chunks published from the file in the background.

Submission does what an inline submit does (limits, model, idempotency, admission, the job
record, its Redis hash, its deadline) except publishing: it records a publishing plan in
``FilePublishQueue`` and leases it to this gateway, which publishes in a task. Chunk
boundaries depend only on the file's line lengths and the plan's ``chunk_items`` /
``chunk_bytes``, so any gateway cuts the same chunks; each carries ``Nats-Msg-Id =
<job_id>:<n>``. After each chunk JetStream acknowledged, the next chunk number is
checkpointed under the lease. A gateway that dies mid-file leaves its lease to run out; any
gateway's sweeper then takes the job over from the checkpoint; the one chunk the dead gateway
may have had in flight is deduplicated by its message id (the lease is far shorter than the
stream's 120 s duplicate window). A job cancelled or past its deadline stops publishing.

The job's inputs are kept for its retries by naming the file's bytes after the job and holding
the file until the job expires (gateway/inputs.py): no copy. An Idempotency-Key is bound to
the file's content (its SHA-256), not its id, so a file uploaded again replays the same job.
A retry's job (gateway/retry.py) is published the same way from its own inputs' object.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator

import msgspec
from nats.aio.client import Client as NATS

from core import bus, faults, metrics
from core.config import Settings
from core.tenants import Tenant
from core.tracing import HEADER as TRACEPARENT
from core.tracing import bind_fields, continue_or_start
from gateway import errors as E
from gateway.admission import Admission
from gateway.files import FileNotFound, FileService, decode_line
from gateway.inputs import InputStore
from gateway.submit import Submitted, Submitter, new_job_id, request_hash
from gateway.webhooks.subscribe import Webhook
from schemas import subjects
from schemas.api import FieldError, SubmitRequest
from schemas.bus import Chunk, ChunkItem, encode
from schemas.errors import ErrorCode
from schemas.states import TERMINAL_JOB
from store.endschedule import EndSchedule
from store.filepublish import FilePublishQueue, PublishPlan
from store.jobstate import JobStateCache
from store.objects import ObjectGone
from store.rebuild import job_fields
from store.results.base import IdempotencyRecord, JobRecord, ResultStore

log = logging.getLogger("inferq.gateway.filejobs")

STATUS_CHECK_CHUNKS = 32
"""A publisher looks whether its job ended (cancel, deadline) every this many chunks."""


async def cut_chunks(lines: AsyncIterator[bytes], chunk_items: int, chunk_bytes: int
                     ) -> AsyncIterator[tuple[int, list[tuple[int, bytes]]]]:
    """(chunk number, [(item index, raw line)]) in order, cut by item count and raw line
    bytes only, so that every gateway cuts a file the same way without decoding it. (A
    decoded text is never longer than its JSON line, so a chunk stays within budget.)"""
    cur: list[tuple[int, bytes]] = []
    size = n = 0
    index = 0
    async for raw in lines:
        cost = len(raw) + 32
        if cur and (len(cur) >= chunk_items or size + cost > chunk_bytes):
            yield n, cur
            n, cur, size = n + 1, [], 0
        cur.append((index, raw))
        size += cost
        index += 1
    if cur:
        yield n, cur


class FileJobs:
    """Submits jobs from files and publishes them, resuming what a dead gateway left."""

    def __init__(self, settings: Settings, files: FileService, submitter: Submitter,
                 store: ResultStore, cache: JobStateCache, nc: NATS, admission: Admission,
                 schedule: EndSchedule, queue: FilePublishQueue,
                 inputs: InputStore | None = None):
        self._s = settings
        self._files = files
        self._submitter = submitter
        self._store = store
        self._cache = cache
        self._nc = nc
        self._js = nc.jetstream()
        self._admission = admission
        self._schedule = schedule
        self.queue = queue
        self._inputs = inputs
        self._owner = secrets.token_hex(8)
        self._tasks: dict[str, asyncio.Task] = {}
        self._loop: asyncio.Task | None = None

    # Submission

    async def submit(self, tenant: Tenant, key_id: str, req: SubmitRequest,
                     idempotency_key: str | None, traceparent: str | None = None) -> Submitted:
        """Check, admit and record a job of the file's lines; publishing starts in the
        background. A repeated Idempotency-Key replays (or completes) the first job."""
        if req.inputs is not None or req.input is not None:
            raise E.InvalidRequest(
                "give exactly one of `inputs`, `input` or `input_file_id`",
                errors=[FieldError("/input_file_id", "exactly one of inputs/input/file")])
        model, version = self._submitter.resolve_model(req.model)
        webhook = self._submitter.webhook(tenant, req)
        if not self._nc.is_connected:
            raise E.Unavailable("the message bus (NATS) is unreachable", retry_after_s=2)
        # An unknown, expired, deleted or another tenant's file: 404 file_not_found.
        meta = await self._files.meta(tenant.name, req.input_file_id or "")
        # The key is bound to the file's content: the same lines uploaded again are the same
        # request (``inferq submit`` run twice uploads twice and must get one job).
        canonical = msgspec.structs.replace(req, input_file_id=f"sha256:{meta.sha256}")
        now = time.time()
        idempotency = self._submitter.idempotency
        stored = await idempotency.stored(tenant, idempotency_key, now)
        if stored is not None:  # a retry: admitted as a request, not as new items
            headers = await self._admission.write(tenant, key_id)
            return await self._replay(tenant, req, canonical, stored, model, version,
                                      meta.lines, headers, traceparent, webhook)
        headers = await self._admission.submit(tenant, key_id, model, meta.lines)
        job_id = new_job_id()
        bind_fields(job_id=job_id)
        rhash = request_hash(canonical) if idempotency_key else None
        if idempotency_key:
            won = await idempotency.claim(tenant, idempotency_key, rhash, job_id, now)
            if won is not None:  # a concurrent duplicate won the claim
                return await self._replay(tenant, req, canonical, won, model, version,
                                          meta.lines, headers, traceparent, webhook)
        job = self._job_record(job_id, tenant, req, model, version, meta.lines, now,
                               idempotency_key, rhash)
        await self._start(job, req.input_file_id or "", traceparent, webhook)
        metrics.JOBS_SUBMITTED.labels(model, req.priority).inc()
        metrics.ITEMS_SUBMITTED.labels(model, req.priority).inc(job.total)
        return Submitted(job_id, replayed=False, headers=headers)

    async def _replay(self, tenant: Tenant, req: SubmitRequest, canonical: SubmitRequest,
                      stored: IdempotencyRecord, model: str, version: int, lines: int,
                      headers: dict[str, str], traceparent: str | None,
                      webhook: Webhook | None) -> Submitted:
        done, job = await self._submitter.idempotency.replay(
            canonical, stored, headers, time.time(), queued=self.queue.pending)
        if done is not None:
            return done
        if job is None:  # the first request died before recording its job
            job = self._job_record(stored.job_id, tenant, req, model, version, lines,
                                   stored.created_at, stored.key, stored.request_hash)
        await self._start(job, req.input_file_id or "", traceparent, webhook)
        return Submitted(job.job_id, replayed=True, headers=headers)

    def _job_record(self, job_id: str, tenant: Tenant, req: SubmitRequest, model: str,
                    version: int, lines: int, now: float, key: str | None,
                    rhash: str | None) -> JobRecord:
        return JobRecord(
            job_id=job_id, tenant=tenant.name, model=model, model_version=version,
            priority=req.priority, total=lines, chunks=-(-lines // self._s.chunk_items),
            created_at=now, expires_at=now + self._s.result_ttl_s,
            deadline=now + req.timeout_s if req.timeout_s else None, metadata=req.metadata,
            idempotency_key=key, request_hash=rhash)

    async def launch(self, job: JobRecord, source: str, traceparent: str | None,
                     webhook: Webhook | None) -> None:
        """Record and publish a job whose inputs are the lines of object ``source`` of the
        files bucket, already kept (a retry's); each step idempotent."""
        await self._start(job, source, traceparent, webhook, keep=False)

    async def _start(self, job: JobRecord, file_id: str, traceparent: str | None,
                     webhook: Webhook | None, *, keep: bool = True) -> None:
        """Keep the inputs (a second name of the file's bytes), record the job, its webhook
        and its plan (each step idempotent), then publish in a task."""
        if keep and self._inputs is not None:  # before the record: a recorded job has them
            await self._inputs.keep_file(job, file_id)
        await self._store.create_job(job)
        subscriptions = self._submitter._subscriptions  # as an inline submit records it
        if subscriptions is not None:  # before the job exists in Redis: its end sees it
            await subscriptions.record(job.job_id, job.tenant, webhook, job.expires_at)
        plan = PublishPlan(file_id=file_id, chunk_items=self._s.chunk_items,
                           chunk_bytes=self._s.chunk_bytes, expires_at=job.expires_at,
                           traceparent=continue_or_start(traceparent).header())
        await self.queue.create(job.job_id, plan, self._owner, self._lease_until())
        await self._seed(job)
        self._spawn(job.job_id)

    async def _seed(self, job: JobRecord) -> None:
        """The job's Redis hash and its deadline: both idempotent."""
        await self._cache.init_job(job.job_id, job_fields(job))
        if job.deadline is not None:
            await self._schedule.at(job.job_id, ErrorCode.DEADLINE_EXCEEDED, job.deadline)

    # Publishing

    def _lease_until(self) -> float:
        return time.time() + self._s.file_publish_lease_s

    def _spawn(self, job_id: str) -> None:
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._guarded(job_id), name=f"file-publish-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _guarded(self, job_id: str) -> None:
        try:
            await self.publish(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out; this or another gateway resumes
            log.warning("publishing file job %s stopped: %s", job_id, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))

    async def resume_due(self) -> int:
        """Sweeper step: take over file jobs whose publisher's lease ran out."""
        due = await self.queue.claim_due(time.time(), self._lease_until(), self._owner)
        for job_id in due:
            log.info("resuming the publishing of file job %s", job_id)
            self._spawn(job_id)
        return len(due)

    async def pending(self, job_id: str) -> bool:
        """Whether the job's chunks are still being published (not interrupted)."""
        return await self.queue.pending(job_id)

    def start(self) -> None:
        """Start looking for file jobs a dead gateway left half published; idempotent."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._resume_loop(), name="gateway-file-jobs")

    async def _resume_loop(self) -> None:
        while True:
            try:
                await self.resume_due()
            except Exception as exc:  # a dependency may be down: try again next time
                log.warning("resuming file jobs failed: %s", exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            await asyncio.sleep(self._s.file_publish_poll_s)

    async def stop(self) -> None:
        """Stop resuming and cancel the publishers: their leases run out and another gateway
        takes their jobs over from the last checkpoint. Idempotent."""
        tasks = list(self._tasks.values())
        if self._loop is not None:
            tasks.append(self._loop)
            self._loop = None
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def publish(self, job_id: str) -> None:
        """Publish the job's chunks from its checkpoint on, while this gateway holds it."""
        got = await self.queue.plan(job_id)
        if got is None:
            return
        plan, start = got
        job = await self._store.get_job(job_id)
        if job is None or job.expires_at <= time.time() or job.status in TERMINAL_JOB:
            await self.queue.finish(job_id, plan.file_id)
            return
        await self._seed(job)  # a takeover: the first gateway may have died before it
        try:
            published = await self._publish_from(job, plan, start)
        except (FileNotFound, ObjectGone):
            # Deleted or expired under us: the sweeper fails the job as an interrupted
            # submission once it is no longer pending here.
            log.warning("file job %s: its file %s is gone", job_id, plan.file_id)
            await self.queue.finish(job_id, plan.file_id)
            return
        if published is None:
            return  # the lease was lost: another gateway publishes
        await self.queue.finish(job_id, plan.file_id)

    async def _publish_from(self, job: JobRecord, plan: PublishPlan, start: int) -> int | None:
        """Chunks ``start`` on; the number published, or None when the lease was lost."""
        job_id = job.job_id
        subject = subjects.job_subject(job.model, job.priority, job.tenant)
        renew_every = self._s.file_publish_lease_s / 3
        renewed = time.monotonic()
        published = 0
        lines = self._files.lines(plan.file_id)
        async for n, raw_items in cut_chunks(lines, plan.chunk_items, plan.chunk_bytes):
            if n < start:
                continue
            if published % STATUS_CHECK_CHUNKS == 0 and published and await self._ended(job):
                log.info("file job %s ended while publishing: stopping at chunk %d", job_id, n)
                break
            items = []
            for index, raw in raw_items:
                it = decode_line(raw)
                items.append(ChunkItem(index, it.text, it.id))
            msg = Chunk(job_id=job_id, chunk=n, tenant=job.tenant, model=job.model,
                        model_version=job.model_version, priority=job.priority,
                        created_at=job.created_at, items=items, deadline=job.deadline,
                        traceparent=plan.traceparent)
            await self._js.publish(subject, encode(msg), headers={
                "Nats-Msg-Id": f"{job_id}:{n}", TRACEPARENT: plan.traceparent or ""})
            faults.crash_point("gateway.file_mid_publish")
            lease = None
            if time.monotonic() - renewed >= renew_every:
                lease, renewed = self._lease_until(), time.monotonic()
            if not await self.queue.checkpoint(job_id, self._owner, n + 1, lease):
                log.warning("file job %s: lease lost at chunk %d; another gateway publishes",
                            job_id, n)
                return None
            if published == 0:
                await bus.hint(self._nc, subjects.work_arrived_subject(
                    job.model, job.priority, job.tenant))
            published += 1
        else:
            await self._store.mark_published(job_id)
            log.info("file job %s: %d chunks published from chunk %d", job_id, published, start)
        return published

    async def _ended(self, job: JobRecord) -> bool:
        snap = await self._cache.get_status(job.job_id)
        return snap is not None and snap.status in TERMINAL_JOB
