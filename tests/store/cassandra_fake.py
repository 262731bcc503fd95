"""An in-memory stand-in for a Cassandra session, for the tests that have no cluster.

It answers the statements in ``store.results.cassandra.STATEMENTS`` with the semantics
Cassandra gives them (LWT compare-and-set under one lock, clustering order, LIMIT,
UPDATE creating a row) and checks every call binds exactly one value per ``?``. It
proves the store's logic (bucketing, cursors, LWT flows, parameter order), not its CQL:
the live suite (``INFERQ_TEST_CASSANDRA``) is what proves the CQL.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cassandra.query import SimpleStatement

from store.results import CassandraConfig
from store.results.cassandra import STATEMENTS, CassandraResultStore

JOB_COLS = [c.strip() for c in STATEMENTS["get_job"][len("SELECT "):].split(" FROM")[0].split(",")]
ITEM_COLS = ["job_id", "idx", "status", "model_version", "client_id", "output", "error_code",
             "error_message", "error_retryable", "finished_at"]


class FakePrepared:
    def __init__(self, name: str, cql: str) -> None:
        self.name, self.cql, self.is_idempotent = name, cql, True


DRIVER_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-cassandra")


class FakeFuture:
    """Calls back from another thread, as the driver's I/O threads do."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def add_callbacks(self, callback: Any, errback: Any) -> None:
        def run() -> None:
            try:
                rows = self._fn()
            except Exception as exc:  # noqa: BLE001 - every error goes to the errback
                errback(exc)
            else:
                callback(rows)
        DRIVER_THREADS.submit(run)


class FakeSession:
    def __init__(self, keyspace: str) -> None:
        self._names = {cql.format(ks=keyspace): name for name, cql in STATEMENTS.items()}
        self._lock = threading.Lock()
        self.calls: list[str] = []
        self.fail_with: BaseException | None = None
        self.jobs: dict[str, dict] = {}
        self.by_tenant: dict[tuple, dict[tuple, dict]] = defaultdict(dict)
        self.unpublished: dict[int, dict[tuple, dict]] = defaultdict(dict)
        self.items: dict[tuple, dict[int, dict]] = defaultdict(dict)
        self.keys: dict[tuple, dict] = {}

    def prepare(self, cql: str) -> FakePrepared:
        return FakePrepared(self._names[cql], cql)

    def execute_async(self, stmt: Any, params: Any = (), **_: Any) -> FakeFuture:
        if isinstance(stmt, SimpleStatement):
            return FakeFuture(lambda: None)  # DDL
        assert len(params) == stmt.cql.count("?"), (stmt.name, params)
        self.calls.append(stmt.name)
        handler = getattr(self, "_" + stmt.name)

        def run() -> Any:
            if self.fail_with is not None:
                raise self.fail_with
            with self._lock:
                return handler(*params)
        return FakeFuture(run)

    # Jobs

    def _ping(self) -> list[dict]:
        return [{"release_version": "fake"}]

    def _create_job(self, *row: Any) -> list[dict]:
        *values, ttl = row
        assert ttl >= 1
        job = dict(zip(JOB_COLS, values, strict=True))
        if job["job_id"] in self.jobs:
            return [{"[applied]": False, **self.jobs[job["job_id"]]}]
        self.jobs[job["job_id"]] = job
        return [{"[applied]": True}]

    def _get_job(self, job_id: str) -> list[dict]:
        return [dict(self.jobs[job_id])] if job_id in self.jobs else []

    def _index_job(self, tenant: str, day: int, created_at: float, job_id: str, ttl: int) -> None:
        self.by_tenant[(tenant, day)][(created_at, job_id)] = {
            "day_bucket": day, "created_at": created_at, "job_id": job_id}

    def _list_first(self, tenant: str, day: int, limit: int) -> list[dict]:
        part = self.by_tenant[(tenant, day)]
        return [part[k] for k in sorted(part, reverse=True)][:limit]

    def _list_after(self, tenant: str, day: int, ca: float, jid: str, limit: int) -> list[dict]:
        part = self.by_tenant[(tenant, day)]
        return [part[k] for k in sorted(part, reverse=True) if k < (ca, jid)][:limit]

    def _add_unpublished(self, minute: int, created_at: float, job_id: str, ttl: int) -> None:
        self.unpublished[minute][(created_at, job_id)] = {
            "minute_bucket": minute, "created_at": created_at, "job_id": job_id}

    def _del_unpublished(self, minute: int, created_at: float, job_id: str) -> None:
        self.unpublished[minute].pop((created_at, job_id), None)

    def _scan_unpublished(self, minute: int, older_than: float, limit: int) -> list[dict]:
        part = self.unpublished[minute]
        return [part[k] for k in sorted(part) if k[0] < older_than][:limit]

    def _update(self, job_id: str, **values: Any) -> None:
        # UPDATE creates the row if it is missing, as in Cassandra.
        self.jobs.setdefault(job_id, dict.fromkeys(JOB_COLS) | {"job_id": job_id}).update(values)

    def _mark_published(self, ttl: int, job_id: str) -> None:
        self._update(job_id, published=True)

    def _mark_started(self, ttl: int, started_at: float, status: str, job_id: str) -> list[dict]:
        current = self.jobs.get(job_id, {}).get("status")
        if current != "queued":
            return [{"[applied]": False, "status": current}]
        self._update(job_id, started_at=started_at, status=status)
        return [{"[applied]": True}]

    def _finish_job(self, ttl: int, status: str, outcome: Any, finished_at: float, code: Any,
                    message: Any, job_id: str) -> list[dict]:
        current = self.jobs.get(job_id, {}).get("status")
        if current not in ("queued", "running"):
            return [{"[applied]": False, "status": current}]
        self._update(job_id, status=status, outcome=outcome, finished_at=finished_at,
                     error_code=code, error_message=message)
        return [{"[applied]": True}]

    # Items

    def _items_present(self, job_id: str, bucket: int, idxs: list[int]) -> list[dict]:
        part = self.items[(job_id, bucket)]
        return [{"idx": i} for i in sorted(set(idxs)) if i in part]

    def _insert_item(self, bucket: int, *row: Any) -> None:
        *values, _ttl = row
        item = dict(zip(ITEM_COLS, values, strict=True))
        assert item["idx"] // 1000 == bucket
        self.items[(item["job_id"], bucket)][item["idx"]] = item  # last writer wins

    def _item_marks(self, job_id: str, bucket: int) -> list[dict]:
        part = self.items[(job_id, bucket)]
        return [{"idx": i, "status": part[i]["status"]} for i in sorted(part)]

    def _items_after(self, job_id: str, bucket: int, after: int, limit: int,
                     status: str | None = None) -> list[dict]:
        part = self.items[(job_id, bucket)]
        rows = [dict(part[i]) for i in sorted(part) if i > after]
        return [r for r in rows if status in (None, r["status"])][:limit]

    def _items_after_status(self, job_id: str, bucket: int, after: int, status: str,
                            limit: int) -> list[dict]:
        return self._items_after(job_id, bucket, after, limit, status)

    # Idempotency

    def _claim_key(self, tenant: str, key: str, request_hash: str, job_id: str,
                   created_at: float, expires_at: float, ttl: int) -> list[dict]:
        if (tenant, key) in self.keys:
            return [{"[applied]": False, **self.keys[(tenant, key)]}]
        self.keys[(tenant, key)] = {
            "tenant": tenant, "idem_key": key, "request_hash": request_hash, "job_id": job_id,
            "created_at": created_at, "expires_at": expires_at}
        return [{"[applied]": True}]

    def _reclaim_key(self, ttl: int, request_hash: str, job_id: str, created_at: float,
                     expires_at: float, tenant: str, key: str, expected: float) -> list[dict]:
        row = self.keys.get((tenant, key))
        if row is None or row["expires_at"] != expected:
            return [{"[applied]": False, "expires_at": row and row["expires_at"]}]
        row.update(request_hash=request_hash, job_id=job_id, created_at=created_at,
                   expires_at=expires_at)
        return [{"[applied]": True}]

    def _get_key(self, tenant: str, key: str) -> list[dict]:
        return [dict(self.keys[(tenant, key)])] if (tenant, key) in self.keys else []


class FakeCassandraStore(CassandraResultStore):
    """The real CassandraResultStore, connected to a FakeSession instead of a cluster."""

    def __init__(self, session: FakeSession | None = None) -> None:
        super().__init__(CassandraConfig(hosts=("fake",), keyspace="inferq_test"))
        self.fake = session or FakeSession("inferq_test")

    def _connect(self) -> FakeSession:
        return self.fake
