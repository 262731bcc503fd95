"""The Cassandra result store's logic: buckets, index rows, compare-and-set flows, TTLs.

Every row carries a TTL, so ``purge_expired`` is a no-op. Job status moves and idempotency
claims are lightweight transactions; everything else is a plain bounded read or write.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import msgspec
from cassandra.cluster import Cluster
from cassandra.query import SimpleStatement, Statement

from schemas.states import LIVE_JOB, ItemStatus, JobStatus, Outcome
from store.results.base import (
    IdempotencyRecord,
    ItemRecord,
    JobRecord,
    ResultStore,
    StoreError,
    StoreUnavailable,
    check_items,
    check_limit,
    check_terminal_job,
    decode_cursor,
    encode_cursor,
)
from store.results.cassandra.rows import idempotency_record, item_record, job_record, job_values
from store.results.cassandra.session import connect, settle, translate
from store.results.cassandra.statements import (
    DAY,
    ITEM_BUCKET,
    MINUTE,
    STATEMENTS,
    schema_statements,
    ttl,
)
from store.results.config import CassandraConfig


class CassandraResultStore(ResultStore):
    """Result store on a Cassandra cluster. Connects on first use; never migrates by itself
    (``migrate()`` is ``inferq store migrate``: DDL is an operator's decision)."""

    expires_by_ttl = True

    def __init__(self, config: CassandraConfig) -> None:
        self.config = config
        self._cluster: Cluster | None = None
        self._session: Any = None
        self._prepared: dict[str, Statement] = {}
        self._lock: asyncio.Lock | None = None
        self._closed = False

    def _connect(self) -> Any:
        self._cluster, session = connect(self.config)
        return session

    async def _run(self, stmt: Statement | str, params: Any = (), **kwargs: Any) -> list[dict]:
        """Connect on first use, prepare a named statement once, execute it asynchronously.

        Every driver error of every call passes through :func:`translate` here.
        """
        if self._closed:
            raise StoreError("Cassandra result store is closed")
        try:
            if self._session is None:
                self._lock = self._lock or asyncio.Lock()
                async with self._lock:
                    if self._session is None:
                        self._session = await asyncio.to_thread(self._connect)
            if isinstance(stmt, str):
                if stmt not in self._prepared:
                    cql = STATEMENTS[stmt].format(ks=self.config.keyspace)
                    prepared = await asyncio.to_thread(self._session.prepare, cql)
                    prepared.is_idempotent = " IF " not in cql  # LWTs are not blindly retried
                    self._prepared[stmt] = prepared
                stmt = self._prepared[stmt]
            return await settle(self._session.execute_async(stmt, params, **kwargs))
        except Exception as exc:
            err = translate(exc)
            if err is None:
                raise
            raise err from exc

    async def migrate(self) -> None:
        """Run the DDL of ``cassandra_schema.cql``, one statement at a time."""
        for cql in schema_statements(self.config.keyspace, self.config.replication_cql()):
            await self._run(SimpleStatement(cql), timeout=60)

    async def ping(self) -> None:
        """Read the local node's version; any failure reads as unavailable."""
        try:
            await self._run("ping")
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """Shut the cluster connection down; later calls raise StoreError."""
        self._closed = True
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    # Jobs

    async def create_job(self, job: JobRecord) -> None:
        """The index rows, then the job row with IF NOT EXISTS."""
        # Index rows first: a crash before the job row leaves ids that readers skip,
        # never a job that neither listing nor the publish-recovery sweep can find.
        left = ttl(job.expires_at)
        writes = [self._run("index_job", (job.tenant, int(job.created_at // DAY),
                                          job.created_at, job.job_id, left))]
        if not job.published:
            writes.append(self._run("add_unpublished", (int(job.created_at // MINUTE),
                                                        job.created_at, job.job_id, left)))
        await asyncio.gather(*writes)
        await self._run("create_job", (*job_values(job), left))

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One partition read."""
        rows = await self._run("get_job", (job_id,))
        return job_record(rows[0]) if rows else None

    async def list_jobs(self, tenant: str, *, cursor: str | None,
                        limit: int) -> tuple[list[JobRecord], str | None]:
        """Day partitions of the tenant index, newest first, back to the retention; the
        cursor holds the last row's (day, created_at, job_id)."""
        check_limit(limit)
        now = time.time()
        after = decode_cursor(cursor, (int, float, str))
        day = after[0] if after else int(now // DAY) + 1  # +1: tolerate clock skew
        oldest = int((now - self.config.retention_s) // DAY) - 1
        found: list[dict[str, Any]] = []
        while day >= oldest and len(found) <= limit:
            want = limit + 1 - len(found)
            if after and after[0] == day:
                found += await self._run("list_after", (tenant, day, after[1], after[2], want))
            else:
                found += await self._run("list_first", (tenant, day, want))
            day -= 1
        page = found[:limit]
        jobs = await asyncio.gather(*(self.get_job(r["job_id"]) for r in page))
        nxt = None
        if len(found) > limit:
            nxt = encode_cursor([page[-1]["day_bucket"], page[-1]["created_at"],
                                 page[-1]["job_id"]])
        return [j for j in jobs if j is not None and j.tenant == tenant], nxt

    async def mark_published(self, job_id: str) -> None:
        """Set the flag, then drop the job's row from the unpublished index."""
        job = await self.get_job(job_id)
        if job is None or job.published:
            return
        await self._run("mark_published", (ttl(job.expires_at), job_id))
        await self._run("del_unpublished", (int(job.created_at // MINUTE), job.created_at, job_id))

    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
        """Minute partitions of the unpublished index over the lookback; stale index rows
        (published, finished, expired or never created) are deleted on the way."""
        first = int((older_than - self.config.recovery_lookback_s) // MINUTE)
        pages = await asyncio.gather(*(
            self._run("scan_unpublished", (minute, older_than, limit))
            for minute in range(first, int(older_than // MINUTE) + 1)))
        marks = [row for page in pages for row in page][:limit]
        jobs = await asyncio.gather(*(self.get_job(r["job_id"]) for r in marks))
        found = []
        for mark, job in zip(marks, jobs, strict=True):
            if job is not None and not job.published and job.status in LIVE_JOB:
                found.append(job)
            else:
                await self._run("del_unpublished", (mark["minute_bucket"], mark["created_at"],
                                                    mark["job_id"]))
        return found

    async def mark_started(self, job_id: str, started_at: float) -> None:
        """A read, and an LWT only while the job is still queued."""
        job = await self.get_job(job_id)
        if job is None or job.started_at is not None or job.status != JobStatus.QUEUED:
            return  # the common case after the first batch: one read, no Paxos round
        await self._run("mark_started", (ttl(job.expires_at), started_at,
                                         JobStatus.RUNNING.value, job_id))

    async def finish_job(self, job_id: str, *, status: JobStatus, outcome: Outcome | None,
                         finished_at: float, error_code: str | None = None,
                         error_message: str | None = None) -> bool:
        """An LWT on the job still being live: of racing finishers, Paxos picks one."""
        check_terminal_job(status)
        job = await self.get_job(job_id)
        if job is None or job.status not in LIVE_JOB:
            return False
        rows = await self._run("finish_job", (ttl(job.expires_at), status, outcome, finished_at,
                                              error_code, error_message, job_id))
        return bool(rows and rows[0]["[applied]"])

    async def correct_job_end(self, job_id: str, *, expected_error_code: str,
                              status: JobStatus, outcome: Outcome | None, finished_at: float,
                              error_code: str | None = None,
                              error_message: str | None = None) -> bool:
        """A read of the record, then a plain UPDATE if it matches."""
        check_terminal_job(status)
        job = await self.get_job(job_id)
        if job is None or job.status in LIVE_JOB or job.error_code != expected_error_code:
            return False
        await self._run("correct_job_end", (ttl(job.expires_at), status, outcome, finished_at,
                                            error_code, error_message, job_id))
        return True

    # Items

    async def upsert_items(self, items: list[ItemRecord]) -> None:
        """First writer wins for writers that do not overlap; last writer wins inside a race.

        One read per item partition finds which of the batch's indexes are present, and
        only the others are inserted (concurrently: each row is atomic, and a call that
        fails part-way is retried whole). So a redelivered batch, the common re-run,
        writes nothing new. Two runs of one batch racing inside that read-then-write
        window overwrite each other's rows, which is acceptable only because both come
        from the same pinned model version on the same input. A per-item LWT would close
        the window at four round trips and a Paxos round per item on the service's
        hottest write path; a single-partition LWT batch hits Cassandra's 50 KB batch
        limit within a few dozen embeddings. Rows take their job's remaining TTL (one
        read per job), so results never outlive or predecease their job.
        """
        check_items(items)
        parts: dict[tuple[str, int], list[ItemRecord]] = defaultdict(list)
        for item in items:
            parts[(item.job_id, item.index // ITEM_BUCKET)].append(item)
        job_ids = list({job_id for job_id, _ in parts})
        jobs, present = await asyncio.gather(
            asyncio.gather(*(self.get_job(job_id) for job_id in job_ids)),
            asyncio.gather(*(self._run("items_present", (job_id, bucket, [i.index for i in part]))
                             for (job_id, bucket), part in parts.items())))
        ttls = self._item_ttls(job_ids, jobs)
        writes = []
        for ((job_id, bucket), part), rows in zip(parts.items(), present, strict=True):
            seen = {r["idx"] for r in rows}
            writes += [self._run("insert_item", (bucket, *msgspec.structs.astuple(i), ttls[job_id]))
                       for i in part if i.index not in seen]
        await asyncio.gather(*writes)

    async def replace_items(self, items: list[ItemRecord]) -> None:
        """A plain INSERT is an upsert in Cassandra: the row becomes exactly this one."""
        check_items(items)
        job_ids = list({i.job_id for i in items})
        jobs = await asyncio.gather(*(self.get_job(job_id) for job_id in job_ids))
        ttls = self._item_ttls(job_ids, jobs)
        await asyncio.gather(*(
            self._run("insert_item", (i.index // ITEM_BUCKET, *msgspec.structs.astuple(i),
                                      ttls[i.job_id])) for i in items))

    def _item_ttls(self, job_ids: list[str], jobs: list[JobRecord | None]) -> dict[str, int]:
        # Items expire with their job; one whose job is already gone keeps the retention.
        return {job_id: ttl(job.expires_at) if job else int(self.config.retention_s)
                for job_id, job in zip(job_ids, jobs, strict=True)}

    async def _buckets(self, job_id: str, first_index: int = 0) -> list[int]:
        job = await self.get_job(job_id)
        if job is None:
            return []
        return list(range(max(first_index, 0) // ITEM_BUCKET,
                          (job.total + ITEM_BUCKET - 1) // ITEM_BUCKET))

    async def done_indexes(self, job_id: str) -> list[tuple[int, ItemStatus]]:
        """One read per item bucket of the job, concurrently."""
        pages = await asyncio.gather(*(self._run("item_marks", (job_id, b))
                                       for b in await self._buckets(job_id)))
        return [(r["idx"], ItemStatus(r["status"])) for page in pages for r in page]

    async def item_counts(self, job_id: str) -> tuple[int, int]:
        """Counted from :meth:`done_indexes` (Cassandra has no cheap GROUP BY here)."""
        marks = await self.done_indexes(job_id)
        succeeded = sum(1 for _, status in marks if status == ItemStatus.SUCCEEDED)
        return succeeded, len(marks) - succeeded

    async def get_items(self, job_id: str, *, status: ItemStatus | None, after_index: int,
                        limit: int) -> list[ItemRecord]:
        """Bucket after bucket from ``after_index`` until ``limit`` rows are found."""
        check_limit(limit)
        found: list[ItemRecord] = []
        for bucket in await self._buckets(job_id, after_index + 1):
            want = limit - len(found)
            if want <= 0:
                break
            if status is None:
                rows = await self._run("items_after", (job_id, bucket, after_index, want))
            else:
                rows = await self._run("items_after_status",
                                       (job_id, bucket, after_index, status, want))
            found += [item_record(r) for r in rows]
        return found

    # Idempotency

    async def claim_idempotency(self, rec: IdempotencyRecord,
                                now: float) -> tuple[IdempotencyRecord, bool]:
        """An LWT insert; over an expired record, an LWT on the expiry that was seen."""
        left = ttl(rec.expires_at)
        for _ in range(3):
            rows = await self._run("claim_key", (*msgspec.structs.astuple(rec), left))
            if rows[0]["[applied]"]:
                return rec, True
            held = idempotency_record(rows[0])
            if held.expires_at > now:
                return held, False
            # Expired but not yet gone (TTL and `now` disagree): compare-and-set on the
            # expiry we saw, so of two reclaimers exactly one wins.
            rows = await self._run("reclaim_key", (left, rec.request_hash, rec.job_id,
                                                   rec.created_at, rec.expires_at, rec.tenant,
                                                   rec.key, held.expires_at))
            if rows[0]["[applied]"]:
                return rec, True
        raise StoreUnavailable(f"idempotency key {rec.key!r} kept changing under contention")

    async def get_idempotency(self, tenant: str, key: str, now: float) -> IdempotencyRecord | None:
        """One partition read that skips an expired record."""
        rows = await self._run("get_key", (tenant, key))
        if not rows or rows[0]["expires_at"] <= now:
            return None
        return idempotency_record(rows[0])

    async def purge_expired(self, now: float) -> int:
        """A no-op: every row was written USING TTL and expires by itself."""
        return 0
