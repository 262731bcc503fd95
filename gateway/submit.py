"""Job submission: check limits, resolve the model, replay or admit, claim the idempotency
key, persist the job, seed its Redis hash, publish its chunks with ``Nats-Msg-Id`` while
keeping its inputs for retries (gateway/inputs.py), and mark it published.

Every step after admission is idempotent, so a retry with the same Idempotency-Key can
complete a half-submitted job without duplicating it. A job left unpublished by a dead
gateway (its inputs perhaps not kept yet either) and not completed by a retry within
``submit_recovery_grace_s`` is failed by the sweeper (``submission_interrupted``).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS

from core import bus, faults, metrics
from core.config import Settings
from core.tenants import Tenant
from core.tracing import HEADER as TRACEPARENT
from core.tracing import bind_fields, continue_or_start, span
from gateway import errors as E
from gateway.admission import Admission
from gateway.inputs import InputStore
from gateway.limits import IDEMPOTENCY_HEADER, check_submit
from gateway.webhooks.subscribe import Subscriptions, Webhook
from models.errors import ModelNotFound
from models.repository import ModelRepository
from schemas import subjects
from schemas.api import FieldError, SubmitRequest
from schemas.bus import Chunk, ChunkItem, encode
from schemas.errors import ErrorCode
from schemas.states import TERMINAL_JOB
from store.endschedule import EndSchedule
from store.jobstate import JobStateCache
from store.rebuild import job_fields
from store.results.base import IdempotencyRecord, JobRecord, ResultStore


def new_job_id() -> str:
    """Time-ordered (48-bit ms) then 80 random bits: sortable and unguessable."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def request_hash(req: msgspec.Struct) -> str:
    """SHA-256 of the request's canonical JSON: what an Idempotency-Key is bound to (a
    submission, or a retry's ``RetryRequest``)."""
    return hashlib.sha256(msgspec.json.encode(req, order="sorted")).hexdigest()


@dataclass(frozen=True)
class Submitted:
    """A submission's answer: the job, and whether it replayed an earlier request's job."""

    job_id: str
    replayed: bool
    headers: dict[str, str] = field(default_factory=dict)
    """RateLimit header fields from admission."""


class Idempotency:
    """The Idempotency-Key rules every kind of submission shares (inline here, from a file in
    ``gateway/filejobs.py``): a key already stored replays its job, or finishes a submission
    its first request left half-done; a new key is claimed before the job is recorded."""

    def __init__(self, settings: Settings, store: ResultStore):
        self._s = settings
        self._store = store

    async def stored(self, tenant: Tenant, key: str | None, now: float
                     ) -> IdempotencyRecord | None:
        """The live record of ``key`` (None: no key, or a key not used yet)."""
        return await self._store.get_idempotency(tenant.name, key, now) if key else None

    async def claim(self, tenant: Tenant, key: str, rhash: str | None, job_id: str,
                    now: float) -> IdempotencyRecord | None:
        """Claim ``key`` for ``job_id``; None when claimed, else the record of the concurrent
        request that won it (to replay)."""
        claim = IdempotencyRecord(tenant=tenant.name, key=key, request_hash=rhash,
                                  job_id=job_id, created_at=now,
                                  expires_at=now + self._s.idempotency_ttl_s)
        stored, created = await self._store.claim_idempotency(claim, now)
        return None if created else stored

    async def replay(self, req: msgspec.Struct, stored: IdempotencyRecord,
                     headers: dict[str, str], now: float, *,
                     queued: Callable[[str], Awaitable[bool]] | None = None
                     ) -> tuple[Submitted | None, JobRecord | None]:
        """A retry with a stored key: ``(answer, None)`` when its job is queued already (or
        ``queued(job_id)`` says it is on its way); ``(None, job)`` when the first request died
        part-way and the caller must finish it (``job`` None: not even recorded). 422 for a
        different body; 409 while the first request may still be running."""
        bind_fields(job_id=stored.job_id)
        if stored.request_hash != request_hash(req):
            raise E.IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body; use a new key",
                errors=[FieldError(f"header:{IDEMPOTENCY_HEADER}", "reused")])
        job = await self._store.get_job(stored.job_id)
        if job is not None and (job.published or job.status in TERMINAL_JOB
                                or (queued is not None and await queued(job.job_id))):
            return Submitted(job.job_id, replayed=True, headers=headers), None
        if now - stored.created_at < self._s.idempotency_grace_s:
            raise E.IdempotencyInProgress(
                "the first request with this key has not finished; retry shortly",
                retry_after_s=1.0, headers=headers)
        return None, job


class Submitter:
    """Admits, records and publishes jobs; completes half-done submissions on a retry."""

    def __init__(self, settings: Settings, repo: ModelRepository, store: ResultStore,
                 cache: JobStateCache, nc: NATS, admission: Admission, schedule: EndSchedule,
                 subscriptions: Subscriptions | None = None,
                 inputs: InputStore | None = None):
        self._s = settings
        self._repo = repo
        self._store = store
        self._cache = cache
        self._nc = nc
        self._js = nc.jetstream()
        self._admission = admission
        self._schedule = schedule
        self._subscriptions = subscriptions
        self.inputs = inputs
        self.idempotency = Idempotency(settings, store)

    def resolve_model(self, spec: str) -> tuple[str, int]:
        """``name`` or ``name@version`` to a served (name, version); 400 at ``/model`` if
        unknown."""
        try:
            return self._repo.resolve(spec)
        except ModelNotFound as exc:
            raise E.ModelNotFoundError(str(exc),
                                       errors=[FieldError("/model", "unknown model")]) from exc

    async def submit(self, tenant: Tenant, key_id: str, req: SubmitRequest,
                     idempotency_key: str | None, traceparent: str | None = None) -> Submitted:
        """Limits, model, idempotency replay, admission, then the idempotent steps: claim the
        key, record the job, seed Redis, schedule its deadline, publish, mark published.
        ``traceparent``: the request's span; the job's chunks carry a child of it."""
        check_submit(req, self._s)
        model, version = self.resolve_model(req.model)
        webhook = self.webhook(tenant, req)
        if not self._nc.is_connected:
            raise E.Unavailable("the message bus (NATS) is unreachable", retry_after_s=2)
        now = time.time()
        stored = await self.idempotency.stored(tenant, idempotency_key, now)
        if stored is not None:  # a retry: admitted as a request, not as new items
            headers = await self._admission.write(tenant, key_id)
            return await self._replay(tenant, req, stored, model, version, now, headers,
                                      traceparent, webhook)
        headers = await self._admission.submit(tenant, key_id, model, len(req.items()))
        job_id = new_job_id()
        bind_fields(job_id=job_id)
        rhash = request_hash(req) if idempotency_key else None
        if idempotency_key:
            won = await self.idempotency.claim(tenant, idempotency_key, rhash, job_id, now)
            if won is not None:  # a concurrent duplicate won the claim
                return await self._replay(tenant, req, won, model, version, now, headers,
                                          traceparent, webhook)
            faults.crash_point("gateway.after_idempotency_record")
        job = self._job_record(job_id, tenant, req, model, version, now, idempotency_key, rhash)
        await self._complete(job, req, traceparent, webhook)
        metrics.JOBS_SUBMITTED.labels(model, req.priority).inc()
        metrics.ITEMS_SUBMITTED.labels(model, req.priority).inc(job.total)
        return Submitted(job_id, replayed=False, headers=headers)

    async def _replay(self, tenant: Tenant, req: SubmitRequest, stored: IdempotencyRecord,
                      model: str, version: int, now: float, headers: dict[str, str],
                      traceparent: str | None, webhook: Webhook | None) -> Submitted:
        done, job = await self.idempotency.replay(req, stored, headers, now)
        if done is not None:
            return done
        # The first request died part-way: complete its submission ourselves (idempotent).
        if job is None:
            job = self._job_record(stored.job_id, tenant, req, model, version, stored.created_at,
                                   stored.key, stored.request_hash)
        await self._complete(job, req, traceparent, webhook, again=True)
        return Submitted(job.job_id, replayed=True, headers=headers)

    def _job_record(self, job_id: str, tenant: Tenant, req: SubmitRequest, model: str,
                    version: int, now: float, key: str | None, rhash: str | None) -> JobRecord:
        items = req.items()
        return JobRecord(
            job_id=job_id, tenant=tenant.name, model=model, model_version=version,
            priority=req.priority, total=len(items), chunks=len(self.chunk(items)),
            created_at=now, expires_at=now + self._s.result_ttl_s,
            deadline=now + req.timeout_s if req.timeout_s else None, metadata=req.metadata,
            idempotency_key=key, request_hash=rhash,
        )

    def chunk(self, items) -> list[list[ChunkItem]]:
        """Split into chunks of at most ``chunk_items`` items and about ``chunk_bytes``."""
        out: list[list[ChunkItem]] = []
        cur: list[ChunkItem] = []
        size = 0
        for i, it in enumerate(items):
            n = len(it.text.encode("utf-8", "surrogatepass")) + 32 + len(it.id or "")
            if cur and (len(cur) >= self._s.chunk_items or size + n > self._s.chunk_bytes):
                out.append(cur)
                cur, size = [], 0
            cur.append(ChunkItem(i, it.text, it.id))
            size += n
        if cur:
            out.append(cur)
        return out

    def webhook(self, tenant: Tenant, req: SubmitRequest) -> Webhook | None:
        """The job's webhook (its own, or the tenant's default), checked; 400 if refused."""
        if self._subscriptions is None:
            return None
        return self._subscriptions.resolve(tenant, req.webhook)

    async def _complete(self, job: JobRecord, req: SubmitRequest,
                        traceparent: str | None, webhook: Webhook | None = None, *,
                        again: bool = False) -> None:
        await self._store.create_job(job)
        if self._subscriptions is not None:  # before the job exists in Redis: its end sees it
            await self._subscriptions.record(job.job_id, job.tenant, webhook, job.expires_at)
        await self._cache.init_job(job.job_id, job_fields(job))
        if job.deadline is not None:  # the sweeper ends it then, even if nothing runs
            await self._schedule.at(job.job_id, ErrorCode.DEADLINE_EXCEEDED, job.deadline)
        if self.inputs is None:
            await self.publish(job, req, traceparent=traceparent)
        else:  # side by side: the inputs' object costs the 202 little more than its encoding
            done = await asyncio.gather(self.publish(job, req, traceparent=traceparent),
                                        self.inputs.keep(job, req.items(), again=again),
                                        return_exceptions=True)
            for outcome in done:  # both ran to their end; the first failure answers
                if isinstance(outcome, BaseException):
                    raise outcome
        await self._store.mark_published(job.job_id)

    async def publish(self, job: JobRecord, req: SubmitRequest, *,
                      traceparent: str | None = None) -> None:
        """Publish the job's chunks (deduplicated by ``Nats-Msg-Id``), waking the lane's
        schedulers after the first; safe to repeat."""
        subject = subjects.job_subject(job.model, job.priority, job.tenant)
        ctx = continue_or_start(traceparent)  # the job's span on the bus
        trace = ctx.header()
        with span("gateway", "publish", ctx, traceparent, kind="producer",
                  **{"messaging.destination.name": subject, "inferq.job_id": job.job_id}):
            for n, items in enumerate(self.chunk(req.items())):
                msg = Chunk(job_id=job.job_id, chunk=n, tenant=job.tenant, model=job.model,
                            model_version=job.model_version, priority=job.priority,
                            created_at=job.created_at, items=items, deadline=job.deadline,
                            traceparent=trace)
                await self._js.publish(subject, encode(msg), headers={
                    "Nats-Msg-Id": f"{job.job_id}:{n}", TRACEPARENT: trace})
                if n == 0:
                    # Wake the schedulers for this lane (they also look every 200 ms).
                    await bus.hint(self._nc, subjects.work_arrived_subject(
                        job.model, job.priority, job.tenant))
                    faults.crash_point("gateway.mid_publish")
