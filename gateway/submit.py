"""Job submission: validate, resolve the model, claim the idempotency key, persist the job,
seed its Redis hash, publish its chunks with ``Nats-Msg-Id``, and mark it published.

Every step is idempotent, so a retry with the same Idempotency-Key (or the recovery sweep
after a gateway crash) can complete a half-submitted job without duplicating it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from gateway import errors as E
from gateway.tenants import Tenant
from inferq import faults, metrics
from inferq.config import Settings
from inferq.models.errors import ModelNotFound
from inferq.models.repository import ModelRepository
from schemas import subjects
from schemas.api import FieldError, SubmitRequest
from schemas.bus import Chunk, ChunkItem, encode
from schemas.states import Priority
from store.jobstate import JobFields, JobStateCache
from store.results.base import IdempotencyRecord, JobRecord, ResultStore

IDEMPOTENCY_GRACE_S = 10.0
"""How long a claimed key whose job is unpublished counts as "in progress" before a retry
takes over and completes the submission itself."""


def new_job_id() -> str:
    """Time-ordered (48-bit ms) then 80 random bits: sortable and unguessable."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def request_hash(req: SubmitRequest) -> str:
    return hashlib.sha256(msgspec.json.encode(req, order="sorted")).hexdigest()


@dataclass(frozen=True)
class Submitted:
    job_id: str
    replayed: bool


class Submitter:
    def __init__(self, settings: Settings, repo: ModelRepository, store: ResultStore,
                 cache: JobStateCache, js: JetStreamContext):
        self._s = settings
        self._repo = repo
        self._store = store
        self._cache = cache
        self._js = js

    def validate(self, req: SubmitRequest) -> None:
        """Limits enforced before any work (the body size limit is enforced by the app)."""
        if (req.inputs is None) == (req.input is None):
            raise E.InvalidRequest("give exactly one of `inputs` (a list) or `input` (one item)",
                                   errors=[FieldError("/inputs", "exactly one of inputs/input")])
        items = req.items()
        if not items:
            raise E.InvalidRequest("`inputs` is empty",
                                   errors=[FieldError("/inputs", "at least one item")])
        if len(items) > self._s.max_items_per_job:
            raise E.PayloadTooLarge(
                f"{len(items)} items; a job holds at most {self._s.max_items_per_job}",
                errors=[FieldError("/inputs", f"at most {self._s.max_items_per_job} items")])
        field = "/inputs" if req.inputs is not None else "/input"
        too_long = [
            FieldError(f"{field}/{i}/text" if req.inputs is not None else "/input/text",
                       f"{len(it.text)} characters; at most {self._s.max_text_chars}")
            for i, it in enumerate(items) if len(it.text) > self._s.max_text_chars
        ]
        if too_long:
            raise E.PayloadTooLarge(f"{len(too_long)} item(s) over the text length limit",
                                    errors=too_long[:20])
        if req.metadata is not None:
            size = len(msgspec.json.encode(req.metadata))
            if size > self._s.max_metadata_bytes:
                raise E.PayloadTooLarge(
                    f"metadata is {size} bytes; at most {self._s.max_metadata_bytes}",
                    errors=[FieldError("/metadata", "too large")])

    def resolve_model(self, spec: str) -> tuple[str, int]:
        try:
            return self._repo.resolve(spec)
        except ModelNotFound as exc:
            raise E.ModelNotFoundError(str(exc),
                                       errors=[FieldError("/model", "unknown model")]) from exc

    async def submit(self, tenant: Tenant, req: SubmitRequest,
                     idempotency_key: str | None) -> Submitted:
        self.validate(req)
        model, version = self.resolve_model(req.model)
        now = time.time()
        job_id = new_job_id()
        rhash = request_hash(req) if idempotency_key else None
        if idempotency_key:
            claim = IdempotencyRecord(tenant=tenant.name, key=idempotency_key, request_hash=rhash,
                                      job_id=job_id, created_at=now,
                                      expires_at=now + self._s.idempotency_ttl_s)
            stored, created = await self._store.claim_idempotency(claim, now)
            if not created:
                return await self._replay(tenant, req, stored, model, version, now)
            faults.crash_point("gateway.after_idempotency_record")
        job = self._job_record(job_id, tenant, req, model, version, now, idempotency_key, rhash)
        await self._complete(job, req)
        metrics.JOBS_SUBMITTED.labels(model, str(req.priority)).inc()
        metrics.ITEMS_SUBMITTED.labels(model, str(req.priority)).inc(job.total)
        return Submitted(job_id, replayed=False)

    async def _replay(self, tenant: Tenant, req: SubmitRequest, stored: IdempotencyRecord,
                      model: str, version: int, now: float) -> Submitted:
        if stored.request_hash != request_hash(req):
            raise E.IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body; use a new key")
        job = await self._store.get_job(stored.job_id)
        if job is not None and job.published:
            return Submitted(job.job_id, replayed=True)
        if now - stored.created_at < IDEMPOTENCY_GRACE_S:
            raise E.IdempotencyInProgress(
                "the first request with this key has not finished; retry shortly",
                retry_after_s=1.0)
        # The first request died part-way: complete its submission ourselves (idempotent).
        if job is None:
            job = self._job_record(stored.job_id, tenant, req, model, version, stored.created_at,
                                   stored.key, stored.request_hash)
        await self._complete(job, req)
        return Submitted(job.job_id, replayed=True)

    def _job_record(self, job_id: str, tenant: Tenant, req: SubmitRequest, model: str,
                    version: int, now: float, key: str | None, rhash: str | None) -> JobRecord:
        items = req.items()
        return JobRecord(
            job_id=job_id, tenant=tenant.name, model=model, model_version=version,
            priority=str(req.priority), total=len(items), chunks=len(self.chunk(items)),
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

    async def _complete(self, job: JobRecord, req: SubmitRequest) -> None:
        await self._store.create_job(job)
        await self._cache.init_job(job.job_id, JobFields(
            tenant=job.tenant, model=job.model, version=job.model_version,
            priority=Priority(job.priority), total=job.total, created_at=job.created_at,
            expires_at=job.expires_at, deadline=job.deadline))
        await self.publish(job, req)
        await self._store.mark_published(job.job_id)

    async def publish(self, job: JobRecord, req: SubmitRequest) -> None:
        subject = subjects.job_subject(job.model, job.priority, job.tenant)
        for n, items in enumerate(self.chunk(req.items())):
            msg = Chunk(job_id=job.job_id, chunk=n, tenant=job.tenant, model=job.model,
                        model_version=job.model_version, priority=job.priority,
                        created_at=job.created_at, items=items, deadline=job.deadline)
            await self._js.publish(subject, encode(msg),
                                   headers={"Nats-Msg-Id": f"{job.job_id}:{n}"})
            if n == 0:
                faults.crash_point("gateway.mid_publish")
