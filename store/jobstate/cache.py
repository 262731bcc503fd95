"""The job state cache: one Redis hash per job, the exactly-once counting core.

``inferq:job:{job_id}`` holds the job's fields, its counters and one marker per item that has
started (:mod:`store.markers`), so all of it lives and dies together under one PEXPIREAT (the
job's ``expires_at``). Every change is one Lua script: an item is counted only the first time
a terminal marker is set, so redelivered batches replay harmlessly, and a terminal job never
changes again.

Redis is a cache: a script that finds no hash raises ``CacheMiss``; the caller rebuilds the hash
from the result store with ``restore`` and retries. Status reads are one HMGET of the
non-marker fields, O(1) however many items the job has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from schemas.states import ItemStatus, JobStatus
from store.jobstate.layout import (
    STATUS_FIELDS,
    create_args,
    hash_fields,
    index_arg,
    outcome,
    read_snapshot,
    text,
    ts,
)
from store.jobstate.records import (
    Backlog,
    FailOutcome,
    JobFields,
    RecordOutcome,
    RestoreOutcome,
    TerminalRecord,
)
from store.jobstate.restore import plan_restore
from store.jobstate.snapshot import JobStatusSnapshot
from store.markers import decode_marker, marker_field, marker_index, result_marker
from store.redis_errors import CacheMiss, redis_errors
from store.redis_pipe import PipelinedReads
from store.usage import USAGE_PREFIX, ItemUsage, day_of
from store.webhooks import DUE_KEY, SUBSCRIPTION_PREFIX

_SCRIPTS = ("create_job", "mark_running", "record_results", "fail_remaining",
            "reconcile_backlog")
# Path(__file__), not importlib.resources: a tests/store/ folder without __init__.py can make
# "store" a namespace package there under an editable install, and resources would look in it.
_LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
_LUA = {name: (_LUA_DIR / f"{name}.lua").read_text() for name in _SCRIPTS}
# The scripts that count also add to the tenant's usage (store/usage.py): one helper, shared.
for _name in ("record_results", "fail_remaining"):
    _LUA[_name] = (_LUA_DIR / "usage.lua").read_text() + _LUA[_name]
_NO_USAGE = ItemUsage(0, 0)


class JobStateCache:
    """Job counters, state and item markers in Redis; every update is one atomic script.

    Missing hashes raise ``CacheMiss`` from the writers (restore, then retry) and give ``None``
    from ``get_status``. Redis failures raise ``CacheUnavailable`` (retryable).
    """

    def __init__(self, redis: Redis, *, key_prefix: str = "inferq:job:",
                 backlog_key: str = "inferq:backlog", live_key: str = "inferq:live",
                 webhook_prefix: str = SUBSCRIPTION_PREFIX, webhook_due_key: str = DUE_KEY,
                 usage_prefix: str = USAGE_PREFIX, reads: PipelinedReads | None = None) -> None:
        self._redis = redis
        self._reads = reads  # status reads on one pipelined connection (store/redis_pipe.py)
        self._prefix = key_prefix
        self._backlog_key = backlog_key
        self._live_key = live_key
        # A job that ends goes on the webhook due set in the same script (store/webhooks.py).
        self._webhook_prefix = webhook_prefix
        self._webhook_due_key = webhook_due_key
        self._usage_prefix = usage_prefix
        self._scripts = {name: redis.register_script(lua) for name, lua in _LUA.items()}

    def key(self, job_id: str) -> str:
        """The Redis key of the job's hash."""
        return self._prefix + job_id

    async def init_job(self, job_id: str, fields: JobFields) -> bool:
        """Create a queued job's hash; False (and no change) when it already exists or has
        already expired."""
        created = await self._run(
            "create_job", job_id, create_args(fields, fields.total, hash_fields(fields)))
        return bool(created)

    async def mark_running(self, job_id: str, indexes: Iterable[int], now: float) -> JobStatus:
        """Mark items running (once each); the first moves a queued job to running."""
        reply = await self._run("mark_running", job_id, [ts(now), *map(index_arg, indexes)])
        if reply is None:
            raise CacheMiss(job_id)
        return JobStatus(text(reply))

    async def record_results(
        self, job_id: str, results: Iterable[tuple[int, ItemStatus | str]], now: float,
        usage: Mapping[int, ItemUsage] | None = None,
    ) -> RecordOutcome:
        """Count each item's result once; ``results`` pairs an index with a terminal
        :class:`ItemStatus` (or its marker, ``"s"`` or ``"f"``). The tenant's usage of the
        day (:mod:`store.usage`) gets the items counted now, with their ``usage`` by index
        (input tokens, inference time) where given, and the job's end if this call ends it."""
        args = [ts(now), day_of(now), self._usage_prefix]
        usage = usage or {}
        for index, result in results:
            cost = usage.get(index, _NO_USAGE)
            args += (index_arg(index), result_marker(result).value, str(int(cost.input_tokens)),
                     str(int(cost.inference_us)))
        reply = await self._run("record_results", job_id, args)
        if reply is None:
            raise CacheMiss(job_id)
        status, ended, counted, became = reply
        return RecordOutcome(JobStatus(text(status)), outcome(ended), int(counted), bool(became))

    async def fail_remaining(self, job_id: str, code: str, message: str, now: float) -> FailOutcome:
        """Job-level failure: every item not yet done fails; the job ends ``failed`` with
        ``error {code, message}`` (its outcome by ``schemas.states.job_failure_outcome``).
        The tenant's usage of the day gets the items failed now and one failed job."""
        reply = await self._run("fail_remaining", job_id,
                                [ts(now), code, message, day_of(now), self._usage_prefix])
        if reply is None:
            raise CacheMiss(job_id)
        status, ended, newly, became = reply
        return FailOutcome(JobStatus(text(status)), outcome(ended), [int(i) for i in newly],
                           bool(became))

    async def restore(
        self,
        job_id: str,
        fields: JobFields,
        done: Iterable[tuple[int, ItemStatus | str]],
        now: float,
        *,
        started_at: float | None = None,
        terminal: TerminalRecord | None = None,
    ) -> RestoreOutcome:
        """Rebuild a lost hash from the result store: ``done`` pairs each item that has a
        result with its status (as ``record_results`` takes it); ``terminal`` is the durable
        record's terminal state, if any (see :func:`~store.jobstate.restore.plan_restore`).

        Writes only if the key is still missing, atomically; a job past ``expires_at`` is not
        restored either (``restored`` is False and the key stays missing).
        """
        plan = plan_restore(job_id, fields, done, now, started_at=started_at, terminal=terminal)
        created = bool(await self._run("create_job", job_id, plan.args))
        return RestoreOutcome(created, plan.status, plan.outcome, created and plan.finalizes)

    async def get_status(self, job_id: str) -> JobStatusSnapshot | None:
        """The job's snapshot from one HMGET of its non-marker fields; None if not cached."""
        with redis_errors("get_status"):
            if self._reads is not None:
                values = await self._reads.hmget(self.key(job_id), STATUS_FIELDS)
            else:
                values = await self._redis.hmget(self.key(job_id), STATUS_FIELDS)
        return read_snapshot(job_id, values)

    async def close_reads(self) -> None:
        """Close the pipelined read connection, if any (the redis client is the caller's)."""
        if self._reads is not None:
            await self._reads.close()

    async def backlog(self) -> Backlog:
        """Items accepted but not yet terminal, per (model, priority) and per tenant.

        Kept by the same scripts that count items, so it is exact while Redis keeps its
        data: ``init_job`` adds a job's total, each counted result and each item failed by
        ``fail_remaining`` takes one away, and ``restore`` adds back what was not yet done.
        What they cannot see (a job that expires unfinished, a job hash restored while the
        counters survived) ``reconcile_backlog`` heals from the live jobs, periodically.
        One HGETALL of a small hash.
        """
        with redis_errors("backlog"):
            raw = await self._redis.hgetall(self._backlog_key)
        models: dict[tuple[str, str], int] = {}
        tenants: dict[str, int] = {}
        for k, v in raw.items():
            name, n = text(k), max(0, int(v))
            if name.startswith("m:"):
                model, _, priority = name[2:].rpartition(":")
                models[(model, priority)] = n
            elif name.startswith("t:"):
                tenants[name[2:]] = n
        return Backlog(models, tenants)

    async def tenant_backlog(self, tenant: str) -> int:
        """Items of this tenant accepted but not yet terminal (for its backlog quota)."""
        with redis_errors("tenant_backlog"):
            v = await self._redis.hget(self._backlog_key, f"t:{tenant}")
        return max(0, int(v)) if v is not None else 0

    async def reconcile_backlog(self, now: float, *, every_s: float = 0.0
                                ) -> tuple[int, dict[str, tuple[int, int]]]:
        """Recompute the backlog counters from the live jobs themselves (one atomic script,
        O(live jobs)): the periodic self-healing of ``backlog``. Returns the number of live
        jobs and every counter that had drifted, as ``field -> (was, now)``. With
        ``every_s``, a run within that long of another (any process's) is skipped: (-1, {})."""
        with redis_errors("reconcile_backlog"):
            reply = await self._scripts["reconcile_backlog"](
                keys=[self._live_key, self._backlog_key, self._live_key + ":reconciled"],
                args=[ts(now), str(int(every_s * 1000))])
        drift = {text(reply[i]): (int(reply[i + 1]), int(reply[i + 2]))
                 for i in range(1, len(reply), 3)}
        return int(reply[0]), drift

    async def live_snapshots(self, limit: int = 10_000, chunk: int = 500
                             ) -> list[JobStatusSnapshot]:
        """The snapshots of up to ``limit`` live (queued or running) jobs, oldest first: what
        queue positions are computed from. One ZRANGE, then pipelined HMGETs of ``chunk``
        jobs each, so Redis never runs one long command."""
        with redis_errors("live_snapshots"):
            keys = await self._redis.zrange(self._live_key, 0, limit - 1)
            out: list[JobStatusSnapshot] = []
            for start in range(0, len(keys), chunk):
                part = [text(k) for k in keys[start:start + chunk]]
                async with self._redis.pipeline(transaction=False) as p:
                    for k in part:
                        p.hmget(k, STATUS_FIELDS)
                    rows = await p.execute()
                for k, values in zip(part, rows, strict=True):
                    snap = read_snapshot(k[len(self._prefix):], values)
                    if snap is not None:
                        out.append(snap)
        return out

    async def item_states(self, job_id: str) -> dict[int, ItemStatus] | None:
        """The status of every item that has a marker (pending items have none); None if the
        job is not cached. O(items): for repairs after a job-level failure, never for status
        reads."""
        with redis_errors("item_states"):
            raw = await self._redis.hgetall(self.key(job_id))
        if not raw:
            return None
        return {index: decode_marker(v) for k, v in raw.items()
                if (index := marker_index(k)) is not None}

    async def marks_of(self, job_id: str, indexes: Sequence[int]) -> dict[int, ItemStatus]:
        """The markers of ``indexes`` that have one (one HMGET): what Redis counted for them."""
        if not indexes:
            return {}
        with redis_errors("marks_of"):
            raw = await self._redis.hmget(self.key(job_id), [marker_field(i) for i in indexes])
        return {i: decode_marker(m) for i, m in zip(indexes, raw, strict=True) if m is not None}

    async def delete(self, job_id: str) -> bool:
        """Drop the job's hash (tests use it to simulate a cache loss)."""
        with redis_errors("delete"):
            return bool(await self._redis.delete(self.key(job_id)))

    async def ping(self) -> None:
        """Round trip to Redis (readiness); raises ``CacheUnavailable`` when it is down."""
        with redis_errors("ping"):
            await self._redis.ping()

    async def _run(self, script: str, job_id: str, args: list[str]) -> Any:
        with redis_errors(script):
            return await self._scripts[script](
                keys=[self.key(job_id), self._backlog_key, self._live_key,
                      self._webhook_due_key, self._webhook_prefix + job_id], args=args)
