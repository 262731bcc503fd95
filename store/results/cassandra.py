"""Cassandra result store: production. Schema and partitioning: ``cassandra_schema.cql``.

Queries are prepared once per store and sent with ``Session.execute_async``; the
driver's callbacks (its own I/O thread) settle asyncio futures on the caller's loop.
Reads and writes use LOCAL_QUORUM; lightweight transactions (job status moves,
idempotency claims) use SERIAL. Every row carries a TTL, so ``purge_expired`` is a no-op.
Every query is bounded (one item bucket, or a LIMIT), so paging is switched off.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from importlib import resources
from typing import Any

import cassandra
import cassandra.protocol as proto
import msgspec
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import SimpleStatement, Statement, dict_factory

from schemas.states import ItemStatus, JobStatus
from store.results import CassandraConfig
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

ITEM_BUCKET = 1000  # item indexes per partition: (job_id, idx // ITEM_BUCKET)
DAY, MINUTE = 86400, 60
MAX_TTL = 630_720_000  # Cassandra's ceiling: 20 years

_JOB = ", ".join(JobRecord.__struct_fields__)
_ITEM = ("job_id, idx, status, model_version, client_id, output, error_code, error_message, "
         "error_retryable, finished_at")
_IDEM = "tenant, idem_key, request_hash, job_id, created_at, expires_at"
LIVE_JOB = frozenset({JobStatus.QUEUED.value, JobStatus.RUNNING.value})
_LIVE = "(" + ", ".join(f"'{s}'" for s in sorted(LIVE_JOB)) + ")"

# {ks} is the configured keyspace. LWT statements are the ones with IF.
STATEMENTS: dict[str, str] = {
    "ping": "SELECT release_version FROM system.local",
    "create_job": f"INSERT INTO {{ks}}.jobs ({_JOB}) VALUES ({', '.join('?' * 20)}) "
                  "IF NOT EXISTS USING TTL ?",
    "get_job": f"SELECT {_JOB} FROM {{ks}}.jobs WHERE job_id = ?",
    "index_job": "INSERT INTO {ks}.jobs_by_tenant (tenant, day_bucket, created_at, job_id) "
                 "VALUES (?, ?, ?, ?) USING TTL ?",
    "list_first": "SELECT day_bucket, created_at, job_id FROM {ks}.jobs_by_tenant "
                  "WHERE tenant = ? AND day_bucket = ? LIMIT ?",
    "list_after": "SELECT day_bucket, created_at, job_id FROM {ks}.jobs_by_tenant "
                  "WHERE tenant = ? AND day_bucket = ? AND (created_at, job_id) < (?, ?) LIMIT ?",
    "add_unpublished": "INSERT INTO {ks}.unpublished (minute_bucket, created_at, job_id) "
                       "VALUES (?, ?, ?) USING TTL ?",
    "del_unpublished": "DELETE FROM {ks}.unpublished "
                       "WHERE minute_bucket = ? AND created_at = ? AND job_id = ?",
    "scan_unpublished": "SELECT minute_bucket, created_at, job_id FROM {ks}.unpublished "
                        "WHERE minute_bucket = ? AND created_at < ? LIMIT ?",
    "mark_published": "UPDATE {ks}.jobs USING TTL ? SET published = true WHERE job_id = ?",
    "mark_started": "UPDATE {ks}.jobs USING TTL ? SET started_at = ?, status = ? "
                    f"WHERE job_id = ? IF status = '{JobStatus.QUEUED.value}'",
    "finish_job": "UPDATE {ks}.jobs USING TTL ? SET status = ?, outcome = ?, finished_at = ?, "
                  f"error_code = ?, error_message = ? WHERE job_id = ? IF status IN {_LIVE}",
    # Not an LWT: the caller checked the record; racing correctors write the same values.
    "correct_job_end": "UPDATE {ks}.jobs USING TTL ? SET status = ?, outcome = ?, "
                       "finished_at = ?, error_code = ?, error_message = ? WHERE job_id = ?",
    "items_present": "SELECT idx FROM {ks}.items WHERE job_id = ? AND bucket = ? AND idx IN ?",
    "insert_item": f"INSERT INTO {{ks}}.items (bucket, {_ITEM}) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    "item_marks": "SELECT idx, status FROM {ks}.items WHERE job_id = ? AND bucket = ?",
    "items_after": f"SELECT {_ITEM} FROM {{ks}}.items "
                   "WHERE job_id = ? AND bucket = ? AND idx > ? LIMIT ?",
    # Filtering inside one partition of <= 1,000 rows: bounded work, no index needed.
    "items_after_status": f"SELECT {_ITEM} FROM {{ks}}.items WHERE job_id = ? AND bucket = ? "
                          "AND idx > ? AND status = ? LIMIT ? ALLOW FILTERING",
    "claim_key": f"INSERT INTO {{ks}}.idempotency ({_IDEM}) VALUES (?, ?, ?, ?, ?, ?) "
                 "IF NOT EXISTS USING TTL ?",
    "reclaim_key": "UPDATE {ks}.idempotency USING TTL ? SET request_hash = ?, job_id = ?, "
                   "created_at = ?, expires_at = ? WHERE tenant = ? AND idem_key = ? "
                   "IF expires_at = ?",
    "get_key": f"SELECT {_IDEM} FROM {{ks}}.idempotency WHERE tenant = ? AND idem_key = ?",
}

_TRANSIENT = (cassandra.Unavailable, cassandra.Timeout, cassandra.CoordinationFailure,
              cassandra.OperationTimedOut, cassandra.UnresolvableContactPoints, NoHostAvailable,
              ConnectionException, proto.OverloadedErrorMessage,
              proto.IsBootstrappingErrorMessage, proto.ServerError)


def translate(exc: BaseException) -> StoreError | None:
    """The one place that turns driver exceptions into StoreError subclasses.

    None for anything that is not the driver's (a bug in our code stays a bug). A
    timed-out LWT may or may not have applied; it is still retryable because every
    LWT here is a compare-and-set that a retry re-evaluates.
    """
    if isinstance(exc, _TRANSIENT):
        return StoreUnavailable(f"Cassandra result store is unavailable: {exc!r}")
    if isinstance(exc, cassandra.DriverException | proto.ErrorMessage):
        return StoreError(f"Cassandra result store failed: {exc!r}")
    return None


def schema_statements(keyspace: str, replication: str) -> list[str]:
    """The DDL of ``cassandra_schema.cql`` for one keyspace, one statement each."""
    text = resources.files(__package__).joinpath("cassandra_schema.cql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = text.format(keyspace=keyspace, replication=replication)
    return [s.strip() for s in text.split(";") if s.strip()]


def ttl(expires_at: float) -> int:
    """Seconds left until ``expires_at``, within what Cassandra accepts (1 s at least)."""
    return max(1, min(MAX_TTL, math.ceil(expires_at - time.time())))


def settle(rf: Any) -> asyncio.Future[list[dict[str, Any]]]:
    """An asyncio future for a driver ResponseFuture (callbacks run on the driver's thread)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[dict[str, Any]]] = loop.create_future()

    def done(rows: Any = None, exc: BaseException | None = None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(list(rows or []))

    rf.add_callbacks(lambda rows: loop.call_soon_threadsafe(done, rows),
                     lambda exc: loop.call_soon_threadsafe(done, None, exc))
    return fut


def _job(row: dict[str, Any]) -> JobRecord | None:
    if row.get("tenant") is None:  # a row whose insert expired or never happened
        return None
    fields = {name: row[name] for name in JobRecord.__struct_fields__}
    fields["metadata"] = msgspec.json.decode(row["metadata"]) if row["metadata"] else None
    fields["published"] = bool(row["published"])
    return JobRecord(**fields)


def _item(row: dict[str, Any]) -> ItemRecord:
    fields = dict(row)
    fields["index"] = fields.pop("idx")
    fields["error_retryable"] = bool(fields["error_retryable"])
    return ItemRecord(**fields)


def _idem(row: dict[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(row["tenant"], row["idem_key"], row["request_hash"], row["job_id"],
                             row["created_at"], row["expires_at"])


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
        cfg, levels = self.config, cassandra.ConsistencyLevel.name_to_value
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc)),
            consistency_level=levels[cfg.consistency],
            serial_consistency_level=levels[cfg.serial_consistency],
            request_timeout=cfg.request_timeout_s, row_factory=dict_factory)
        auth = PlainTextAuthProvider(cfg.username, cfg.password) if cfg.username else None
        cluster = Cluster(list(cfg.hosts), port=cfg.port, auth_provider=auth,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                          connect_timeout=cfg.connect_timeout_s)
        try:
            session = cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise
        session.default_fetch_size = None
        self._cluster = cluster
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
        for cql in schema_statements(self.config.keyspace, self.config.replication_cql()):
            await self._run(SimpleStatement(cql), timeout=60)

    async def ping(self) -> None:
        try:
            await self._run("ping")
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        self._closed = True
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    # Jobs

    async def create_job(self, job: JobRecord) -> None:
        # Index rows first: a crash before the job row leaves ids that readers skip,
        # never a job that neither listing nor the publish-recovery sweep can find.
        left = ttl(job.expires_at)
        writes = [self._run("index_job", (job.tenant, int(job.created_at // DAY),
                                          job.created_at, job.job_id, left))]
        if not job.published:
            writes.append(self._run("add_unpublished", (int(job.created_at // MINUTE),
                                                        job.created_at, job.job_id, left)))
        await asyncio.gather(*writes)
        row = list(msgspec.structs.astuple(job))
        row[10] = msgspec.json.encode(job.metadata).decode() if job.metadata is not None else None
        await self._run("create_job", (*row, left))

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._run("get_job", (job_id,))
        return _job(rows[0]) if rows else None

    async def list_jobs(self, tenant: str, *, cursor: str | None,
                        limit: int) -> tuple[list[JobRecord], str | None]:
        check_limit(limit)
        now = time.time()
        after = decode_cursor(cursor, (int, float, str)) if cursor else None
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
        job = await self.get_job(job_id)
        if job is None or job.published:
            return
        await self._run("mark_published", (ttl(job.expires_at), job_id))
        await self._run("del_unpublished", (int(job.created_at // MINUTE), job.created_at, job_id))

    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
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
            else:  # stale mark: published, finished, expired or never created
                await self._run("del_unpublished", (mark["minute_bucket"], mark["created_at"],
                                                    mark["job_id"]))
        return found

    async def mark_started(self, job_id: str, started_at: float) -> None:
        job = await self.get_job(job_id)
        if job is None or job.started_at is not None or job.status != JobStatus.QUEUED:
            return  # the common case after the first batch: one read, no Paxos round
        await self._run("mark_started", (ttl(job.expires_at), started_at,
                                         JobStatus.RUNNING.value, job_id))

    async def finish_job(self, job_id: str, *, status: str, outcome: str | None,
                         finished_at: float, error_code: str | None = None,
                         error_message: str | None = None) -> bool:
        check_terminal_job(status)
        job = await self.get_job(job_id)
        if job is None or job.status not in LIVE_JOB:
            return False
        rows = await self._run("finish_job", (ttl(job.expires_at), status, outcome, finished_at,
                                              error_code, error_message, job_id))
        return bool(rows and rows[0]["[applied]"])

    async def correct_job_end(self, job_id: str, *, expected_error_code: str, status: str,
                              outcome: str | None, finished_at: float,
                              error_code: str | None = None,
                              error_message: str | None = None) -> bool:
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
        # Items expire with their job; one whose job is already gone keeps the retention.
        ttls = {job_id: ttl(job.expires_at) if job else int(self.config.retention_s)
                for job_id, job in zip(job_ids, jobs, strict=True)}
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
        ttls = {job_id: ttl(job.expires_at) if job else int(self.config.retention_s)
                for job_id, job in zip(job_ids, jobs, strict=True)}
        await asyncio.gather(*(
            self._run("insert_item", (i.index // ITEM_BUCKET, *msgspec.structs.astuple(i),
                                      ttls[i.job_id])) for i in items))

    async def _buckets(self, job_id: str, first_index: int = 0) -> list[int]:
        job = await self.get_job(job_id)
        if job is None:
            return []
        return list(range(max(first_index, 0) // ITEM_BUCKET,
                          (job.total + ITEM_BUCKET - 1) // ITEM_BUCKET))

    async def done_indexes(self, job_id: str) -> list[tuple[int, str]]:
        pages = await asyncio.gather(*(self._run("item_marks", (job_id, b))
                                       for b in await self._buckets(job_id)))
        return [(r["idx"], r["status"]) for page in pages for r in page]

    async def item_counts(self, job_id: str) -> tuple[int, int]:
        marks = await self.done_indexes(job_id)
        succeeded = sum(1 for _, status in marks if status == ItemStatus.SUCCEEDED)
        return succeeded, len(marks) - succeeded

    async def get_items(self, job_id: str, *, status: str | None, after_index: int,
                        limit: int) -> list[ItemRecord]:
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
            found += [_item(r) for r in rows]
        return found

    # Idempotency

    async def claim_idempotency(self, rec: IdempotencyRecord,
                                now: float) -> tuple[IdempotencyRecord, bool]:
        left = ttl(rec.expires_at)
        for _ in range(3):
            rows = await self._run("claim_key", (*msgspec.structs.astuple(rec), left))
            if rows[0]["[applied]"]:
                return rec, True
            held = _idem(rows[0])
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
        rows = await self._run("get_key", (tenant, key))
        if not rows or rows[0]["expires_at"] <= now:
            return None
        return _idem(rows[0])

    async def purge_expired(self, now: float) -> int:
        """A no-op: every row was written USING TTL and expires by itself."""
        return 0
