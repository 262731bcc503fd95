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
from cassandra.query import UNSET_VALUE, SimpleStatement

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
from store.results.cassandra.rows import (
    idempotency_record,
    item_record,
    item_row,
    job_record,
    job_values,
)
from store.results.cassandra.session import CassandraSession
from store.results.cassandra.statements import (
    DAY,
    ITEM_BUCKET,
    MINUTE,
    schema_statements,
    ttl,
)
from store.results.config import CassandraConfig

_LWT_TRIES = 3
"""Rounds of one compare-and-set (LWT, then a SERIAL read when its outcome is unknown)."""
ROWS_PER_BATCH = 100
"""Item rows per unlogged batch: ~150 KB of embeddings, far below the largest mutation a node
takes (half its commit-log segment: 16 MiB by default)."""


def _partitions(items: list[ItemRecord]) -> dict[tuple[str, int], list[ItemRecord]]:
    """Items grouped by their partition, ``(job_id, index // ITEM_BUCKET)``."""
    parts: dict[tuple[str, int], list[ItemRecord]] = defaultdict(list)
    for item in items:
        parts[(item.job_id, item.index // ITEM_BUCKET)].append(item)
    return parts


def _undecided(what: str, key: str) -> StoreUnavailable:
    return StoreUnavailable(f"Cassandra {what} for {key!r}: outcome still unknown after "
                            f"{_LWT_TRIES} rounds")


class CassandraResultStore(ResultStore):
    """Result store on a Cassandra cluster. Connects on first use; never migrates by itself
    (``migrate()`` is ``inferq store migrate``: DDL is an operator's decision)."""

    expires_by_ttl = True

    def __init__(self, config: CassandraConfig) -> None:
        self.config = config
        self._db = CassandraSession(config)

    async def migrate(self) -> None:
        """Run the DDL of ``cassandra_schema.cql``, one statement at a time."""
        for cql in schema_statements(self.config.keyspace, self.config.replication_cql()):
            await self._db.run(SimpleStatement(cql), timeout=60)

    async def ping(self) -> None:
        """Read the local node's version; any failure reads as unavailable."""
        try:
            await self._db.run("ping")
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """Shut the cluster connection down; later calls raise StoreError."""
        await self._db.close()

    # Jobs

    async def create_job(self, job: JobRecord) -> None:
        """The index rows, then the job row with IF NOT EXISTS."""
        # Index rows first: a crash before the job row leaves ids that readers skip,
        # never a job that neither listing nor the publish-recovery sweep can find.
        left = ttl(job.expires_at)
        writes = [self._db.run("index_job", (job.tenant, int(job.created_at // DAY),
                                             job.created_at, job.job_id, left))]
        if not job.published:
            writes.append(self._db.run("add_unpublished", (int(job.created_at // MINUTE),
                                                           job.created_at, job.job_id, left)))
        await asyncio.gather(*writes)
        for _ in range(_LWT_TRIES):
            if await self._db.lwt("create_job", (*job_values(job), left)) is not None:
                return
            if await self.get_job(job.job_id, serial=True) is not None:
                return  # ours, or one a retried create made first: either way it exists
        raise _undecided("create_job", job.job_id)

    async def get_job(self, job_id: str, *, serial: bool = False) -> JobRecord | None:
        """One partition read (``serial``: one that settles an LWT in flight on the job)."""
        rows = await self._db.run("get_job", (job_id,), serial=serial)
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
                found += await self._db.run("list_after", (tenant, day, after[1], after[2], want))
            else:
                found += await self._db.run("list_first", (tenant, day, want))
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
        await self._db.run("mark_published", (ttl(job.expires_at), job_id))
        await self._db.run("del_unpublished",
                           (int(job.created_at // MINUTE), job.created_at, job_id))

    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
        """Minute partitions of the unpublished index over the lookback; stale index rows
        (published, finished, expired or never created) are deleted on the way."""
        first = int((older_than - self.config.recovery_lookback_s) // MINUTE)
        pages = await asyncio.gather(*(
            self._db.run("scan_unpublished", (minute, older_than, limit))
            for minute in range(first, int(older_than // MINUTE) + 1)))
        marks = [row for page in pages for row in page][:limit]
        jobs = await asyncio.gather(*(self.get_job(r["job_id"]) for r in marks))
        found = []
        for mark, job in zip(marks, jobs, strict=True):
            if job is not None and not job.published and job.status in LIVE_JOB:
                found.append(job)
            else:
                await self._db.run("del_unpublished", (mark["minute_bucket"], mark["created_at"],
                                                       mark["job_id"]))
        return found

    async def mark_started(self, job_id: str, started_at: float) -> None:
        """A read, and an LWT only while the job is still queued."""
        job = await self.get_job(job_id)
        for _ in range(_LWT_TRIES):
            if job is None or job.started_at is not None or job.status != JobStatus.QUEUED:
                return  # the common case after the first batch: one read, no Paxos round
            if await self._db.lwt("mark_started", (ttl(job.expires_at), started_at,
                                                   JobStatus.RUNNING.value, job_id)) is not None:
                return
            job = await self.get_job(job_id, serial=True)  # still queued: it did not apply
        raise _undecided("mark_started", job_id)

    async def finish_job(self, job_id: str, *, status: JobStatus, outcome: Outcome | None,
                         finished_at: float, error_code: str | None = None,
                         error_message: str | None = None) -> bool:
        """An LWT on the job still being live: of racing finishers, Paxos picks one."""
        check_terminal_job(status)
        job = await self.get_job(job_id)
        ours = (status, outcome, finished_at, error_code)
        for _ in range(_LWT_TRIES):
            if job is None or job.status not in LIVE_JOB:
                return False
            row = await self._db.lwt("finish_job", (ttl(job.expires_at), status, outcome,
                                                    finished_at, error_code, error_message, job_id))
            if row is not None:
                return bool(row["[applied]"])
            job = await self.get_job(job_id, serial=True)
            if job is not None and job.status not in LIVE_JOB:
                # Ended: by this call exactly when the record holds what it wrote.
                return (job.status, job.outcome, job.finished_at, job.error_code) == ours
        raise _undecided("finish_job", job_id)

    async def correct_job_end(self, job_id: str, *, expected_error_code: str,
                              status: JobStatus, outcome: Outcome | None, finished_at: float,
                              error_code: str | None = None,
                              error_message: str | None = None) -> bool:
        """A read of the record, then a plain UPDATE if it matches."""
        check_terminal_job(status)
        job = await self.get_job(job_id)
        if job is None or job.status in LIVE_JOB or job.error_code != expected_error_code:
            return False
        await self._db.run("correct_job_end", (ttl(job.expires_at), status, outcome, finished_at,
                                               error_code, error_message, job_id))
        return True

    # Items

    async def upsert_items(self, items: list[ItemRecord]) -> None:
        """First writer wins for writers that do not overlap; last writer wins inside a race.

        One read per item partition finds which of the batch's indexes are present, and
        only the others are inserted (an unlogged batch per partition, concurrently: each
        is atomic, and a call that fails part-way is retried whole). So a redelivered
        batch, the common re-run, writes nothing new. Two runs of one batch racing inside
        that read-then-write window overwrite each other's rows, which is acceptable only
        because both come from the same pinned model version on the same input. An LWT
        (per item or per partition) would close the window at the price of a Paxos round
        on the service's hottest write path. Rows take their job's remaining TTL (one read
        per job), so results never outlive or predecease their job.
        """
        check_items(items)
        parts = _partitions(items)
        job_ids = list({job_id for job_id, _ in parts})
        jobs, present = await asyncio.gather(
            asyncio.gather(*(self.get_job(job_id) for job_id in job_ids)),
            asyncio.gather(*(self._db.run("items_present",
                                          (job_id, bucket, [i.index for i in part]))
                             for (job_id, bucket), part in parts.items())))
        ttls = self._item_ttls(job_ids, jobs)
        writes = []
        for ((job_id, bucket), part), rows in zip(parts.items(), present, strict=True):
            seen = {r["idx"] for r in rows}
            writes.append(self._insert_items(bucket, [i for i in part if i.index not in seen],
                                             ttls[job_id], fresh=True))
        await asyncio.gather(*writes)

    async def replace_items(self, items: list[ItemRecord]) -> None:
        """A plain INSERT is an upsert in Cassandra: the row becomes exactly this one."""
        check_items(items)
        parts = _partitions(items)
        job_ids = list({job_id for job_id, _ in parts})
        jobs = await asyncio.gather(*(self.get_job(job_id) for job_id in job_ids))
        ttls = self._item_ttls(job_ids, jobs)
        await asyncio.gather(*(self._insert_items(bucket, part, ttls[job_id], fresh=False)
                               for (job_id, bucket), part in parts.items()))

    async def _insert_items(self, bucket: int, part: list[ItemRecord], left: int, *,
                            fresh: bool) -> None:
        """One partition's rows, in unlogged batches of at most ``ROWS_PER_BATCH``: a batch per
        partition is one mutation (one commit-log entry, one round trip) instead of a write
        per row, which is what bounded the write-back (bench/bench_store.py). ``fresh``: the
        rows are not there yet (``item_row``)."""
        absent = UNSET_VALUE if fresh and self.config.protocol_version >= 4 else None
        rows = [item_row(bucket, i, left, absent) for i in part]
        await asyncio.gather(*(self._db.run("insert_item", many=rows[n:n + ROWS_PER_BATCH])
                               for n in range(0, len(rows), ROWS_PER_BATCH)))

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
        pages = await asyncio.gather(*(self._db.run("item_marks", (job_id, b))
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
                rows = await self._db.run("items_after", (job_id, bucket, after_index, want))
            else:
                rows = await self._db.run("items_after_status",
                                          (job_id, bucket, after_index, status, want))
            found += [item_record(r) for r in rows]
        return found

    # Idempotency

    async def claim_idempotency(self, rec: IdempotencyRecord,
                                now: float) -> tuple[IdempotencyRecord, bool]:
        """An LWT insert; over an expired record, an LWT on the expiry that was seen. A claim
        of unknown outcome is decided by a SERIAL read: it won exactly if the key holds it."""
        left = ttl(rec.expires_at)
        for _ in range(_LWT_TRIES):
            row = await self._db.lwt("claim_key", (*msgspec.structs.astuple(rec), left))
            if row is not None and row["[applied]"]:
                return rec, True
            held = idempotency_record(row) if row is not None \
                else await self._held_key(rec.tenant, rec.key)
            if held is None:
                continue  # unknown outcome, and the key is free: the claim did not apply
            if held == rec:
                return rec, True  # the timed-out claim did apply
            if held.expires_at > now:
                return held, False
            # Expired but not yet gone (TTL and `now` disagree): compare-and-set on the
            # expiry we saw, so of two reclaimers exactly one wins.
            row = await self._db.lwt("reclaim_key", (left, rec.request_hash, rec.job_id,
                                                     rec.created_at, rec.expires_at, rec.tenant,
                                                     rec.key, held.expires_at))
            if row is None and await self._held_key(rec.tenant, rec.key) == rec:
                return rec, True
            if row is not None and row["[applied]"]:
                return rec, True
        raise StoreUnavailable(f"idempotency key {rec.key!r} kept changing under contention")

    async def _held_key(self, tenant: str, key: str) -> IdempotencyRecord | None:
        """The key's record as Paxos decided it, expired or not."""
        rows = await self._db.run("get_key", (tenant, key), serial=True)
        return idempotency_record(rows[0]) if rows else None

    async def get_idempotency(self, tenant: str, key: str, now: float) -> IdempotencyRecord | None:
        """One partition read that skips an expired record."""
        rows = await self._db.run("get_key", (tenant, key))
        if not rows or rows[0]["expires_at"] <= now:
            return None
        return idempotency_record(rows[0])

    async def purge_expired(self, now: float) -> int:
        """A no-op: every row was written USING TTL and expires by itself."""
        return 0
