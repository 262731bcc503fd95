"""The Redis job state cache against a real redis-server: exactly-once counting, terminal
states that never change, cache loss and restore, and Redis failures as typed errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from inferq.embedded import ServerProcess, free_port, redis_server_binary
from schemas.errors import JobError
from schemas.states import JobStatus, Outcome, Priority, derive_job_state
from store.jobstate import JobFields, JobStateCache, JobStatusSnapshot, TerminalRecord
from store.redis_errors import (
    CacheMisconfigured,
    CacheMiss,
    CacheRejected,
    CacheUnavailable,
    check_noeviction,
)

T0 = 1_700_000_000.25  # created_at of every job here
EXPIRES = time.time() + 3600


def job(total: int, **kw: object) -> JobFields:
    base = dict(tenant="acme", model="minilm", version=2, priority=Priority.BATCH, total=total,
                created_at=T0, expires_at=EXPIRES, deadline=None)
    return JobFields(**{**base, **kw})


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def cache(redis: Redis) -> JobStateCache:
    return JobStateCache(redis)


async def snap(cache: JobStateCache, job_id: str) -> JobStatusSnapshot:
    s = await cache.get_status(job_id)
    assert s is not None
    return s


def counts(s: JobStatusSnapshot) -> tuple[int, int, int, int]:
    return s.pending, s.running, s.succeeded, s.failed


async def test_replayed_batch_is_counted_once(cache: JobStateCache) -> None:
    assert await cache.init_job("j1", job(4))
    batch = [(0, "s"), (1, "f"), (2, "s"), (3, "s")]
    first = await cache.record_results("j1", batch, T0 + 1)
    again = await cache.record_results("j1", batch, T0 + 2)
    assert (first.newly_counted, first.became_terminal) == (4, True)
    assert (again.newly_counted, again.became_terminal) == (0, False)
    assert (again.status, again.outcome) == (JobStatus.SUCCEEDED, Outcome.PARTIAL)
    s = await snap(cache, "j1")
    assert counts(s) == (0, 0, 3, 1)
    assert s.finished_at == T0 + 1


async def test_init_job_twice_is_a_no_op(cache: JobStateCache, redis: Redis) -> None:
    assert await cache.init_job("j1", job(3))
    await cache.record_results("j1", [(0, "s")], T0 + 1)
    assert not await cache.init_job("j1", job(9, tenant="other"))
    s = await snap(cache, "j1")
    assert (s.tenant, s.total, s.succeeded) == ("acme", 3, 1)
    assert EXPIRES - time.time() - 5 < await redis.ttl(cache.key("j1")) <= 3600


async def test_fifty_concurrent_writers_count_each_item_once(
    cache: JobStateCache, redis_url: str
) -> None:
    total = 1000
    await cache.init_job("big", job(total))
    other_pool = Redis.from_url(redis_url)
    caches = [cache, JobStateCache(other_pool)]

    def mark(i: int) -> str:
        return "f" if i % 7 == 0 else "s"

    async def writer(w: int) -> list[tuple[int, bool]]:
        c = caches[w % 2]
        # Overlapping windows of 60 items, stepping 20: every item is seen by ~3 writers.
        indexes = [i for i in range(w * 20 - 20, w * 20 + 40) if 0 <= i < total]
        seen = []
        for _ in range(2):  # each writer also replays its own work, as a redelivery would
            for k in range(0, len(indexes), 16):
                chunk = indexes[k:k + 16]
                await c.mark_running("big", chunk, T0 + 1)
                out = await c.record_results("big", [(i, mark(i)) for i in chunk], T0 + 2)
                seen.append((out.newly_counted, out.became_terminal))
                await asyncio.sleep(0)
        return seen

    try:
        results = await asyncio.gather(*(writer(w) for w in range(50)))
    finally:
        await other_pool.aclose()
    calls = [r for rs in results for r in rs]
    assert sum(n for n, _ in calls) == total
    assert sum(b for _, b in calls) == 1
    failed = sum(1 for i in range(total) if mark(i) == "f")
    s = await snap(cache, "big")
    assert counts(s) == (0, 0, total - failed, failed)
    assert (s.status, s.outcome) == (JobStatus.SUCCEEDED, Outcome.PARTIAL)


@pytest.mark.parametrize(
    ("marks", "status", "outcome"),
    [
        ("ssff", JobStatus.SUCCEEDED, Outcome.PARTIAL),
        ("ffff", JobStatus.FAILED, Outcome.ALL_FAILED),
        ("ssss", JobStatus.SUCCEEDED, Outcome.ALL_SUCCEEDED),
    ],
)
async def test_terminal_status_and_outcome_follow_the_counts(
    cache: JobStateCache, marks: str, status: JobStatus, outcome: Outcome
) -> None:
    await cache.init_job("j", job(len(marks)))
    out = await cache.record_results("j", list(enumerate(marks)), T0 + 5)
    assert (out.status, out.outcome, out.became_terminal) == (status, outcome, True)
    s = await snap(cache, "j")
    assert derive_job_state(s.total, s.total, s.succeeded, s.failed) == (status, outcome)
    # Results arrived without mark_running: the job still started, when it finished.
    assert s.started_at == s.finished_at == T0 + 5


async def test_mark_running_moves_queued_to_running_once(cache: JobStateCache) -> None:
    await cache.init_job("j", job(10))
    s = await snap(cache, "j")
    assert (s.status, s.started_at, counts(s)) == (JobStatus.QUEUED, None, (10, 0, 0, 0))

    assert await cache.mark_running("j", [0, 1, 2], T0 + 1) == JobStatus.RUNNING
    assert await cache.mark_running("j", [2, 3], T0 + 2) == JobStatus.RUNNING
    s = await snap(cache, "j")
    assert (s.status, s.started_at, counts(s)) == (JobStatus.RUNNING, T0 + 1, (6, 4, 0, 0))

    out = await cache.record_results("j", [(0, "s"), (1, "f"), (9, "s")], T0 + 3)
    assert (out.status, out.outcome, out.newly_counted) == (JobStatus.RUNNING, None, 3)
    # A redelivered batch marks running again: done items stay done, running ones stay counted.
    await cache.mark_running("j", [0, 1, 2, 3], T0 + 4)
    s = await snap(cache, "j")
    assert counts(s) == (5, 2, 2, 1)
    doc = s.to_doc()
    assert (doc.counts.pending, doc.counts.running, doc.counts.total) == (5, 2, 10)
    assert doc.started_at == "2023-11-14T22:13:21.250Z"
    assert doc.finished_at is None and doc.outcome is None and doc.error is None


async def test_a_terminal_job_never_changes(cache: JobStateCache) -> None:
    await cache.init_job("done", job(2))
    await cache.record_results("done", [(0, "s"), (1, "f")], T0 + 1)
    before = await snap(cache, "done")

    late = await cache.record_results("done", [(0, "f"), (1, "s")], T0 + 9)
    assert (late.status, late.outcome, late.newly_counted, late.became_terminal) == (
        JobStatus.SUCCEEDED, Outcome.PARTIAL, 0, False)
    assert await cache.mark_running("done", [0, 1], T0 + 9) == JobStatus.SUCCEEDED
    fail = await cache.fail_remaining("done", "cancelled", "too late", T0 + 9)
    assert (fail.status, fail.newly_failed, fail.became_terminal) == (
        JobStatus.SUCCEEDED, [], False)
    assert await snap(cache, "done") == before  # rev included: not even a no-op write


async def test_late_results_of_a_cancelled_job_count_nothing(cache: JobStateCache) -> None:
    await cache.init_job("c", job(5))
    await cache.mark_running("c", [0, 1], T0 + 1)
    out = await cache.fail_remaining("c", "cancelled", "cancelled by the tenant", T0 + 2)
    assert out.newly_failed == [0, 1, 2, 3, 4]
    before = await snap(cache, "c")
    late = await cache.record_results("c", [(0, "s"), (1, "s")], T0 + 3)
    assert (late.newly_counted, late.became_terminal, late.status) == (0, False, JobStatus.FAILED)
    assert await cache.mark_running("c", [2], T0 + 3) == JobStatus.FAILED
    assert await snap(cache, "c") == before


async def test_fail_remaining_fails_only_items_not_done(cache: JobStateCache) -> None:
    await cache.init_job("j", job(10))
    await cache.mark_running("j", range(6), T0 + 1)
    await cache.record_results("j", [(0, "s"), (1, "s"), (2, "s"), (3, "f")], T0 + 2)

    out = await cache.fail_remaining("j", "deadline_exceeded", "deadline passed", T0 + 3)
    assert out.newly_failed == [4, 5, 6, 7, 8, 9]
    assert (out.status, out.outcome, out.became_terminal) == (
        JobStatus.FAILED, Outcome.PARTIAL, True)
    s = await snap(cache, "j")
    assert counts(s) == (0, 0, 3, 7)
    assert (s.started_at, s.finished_at) == (T0 + 1, T0 + 3)
    assert s.to_doc().error == JobError(code="deadline_exceeded", message="deadline passed")

    again = await cache.fail_remaining("j", "cancelled", "again", T0 + 4)
    assert (again.newly_failed, again.became_terminal) == ([], False)
    assert (await snap(cache, "j")).error == s.error


async def test_fail_remaining_on_a_queued_job(cache: JobStateCache) -> None:
    await cache.init_job("q", job(3))
    out = await cache.fail_remaining("q", "model_unavailable", "no runner for minilm@2", T0 + 1)
    assert (out.outcome, out.newly_failed) == (Outcome.ALL_FAILED, [0, 1, 2])
    s = await snap(cache, "q")
    assert (s.status, s.started_at, s.finished_at) == (JobStatus.FAILED, None, T0 + 1)
    assert s.to_doc().started_at is None


async def test_fail_remaining_on_ten_thousand_items(cache: JobStateCache, redis: Redis) -> None:
    total = 10_000
    await cache.init_job("huge", job(total))
    await cache.record_results("huge", [(i, "s") for i in range(0, total, 3)], T0 + 1)
    await redis.config_resetstat()
    start = time.perf_counter()
    out = await cache.fail_remaining("huge", "cancelled", "cancelled", T0 + 2)
    elapsed = time.perf_counter() - start
    # Server time is what matters: Redis runs nothing else while the script runs.
    server_us = (await redis.info("commandstats"))["cmdstat_evalsha"]["usec"]
    print(f"\nfail_remaining over {total} items ({len(out.newly_failed)} newly failed): "
          f"{elapsed * 1000:.1f} ms at the client, {server_us / 1000:.1f} ms inside Redis")
    assert len(out.newly_failed) == total - len(range(0, total, 3))
    s = await snap(cache, "huge")
    assert (s.succeeded + s.failed, s.pending, s.outcome) == (total, 0, Outcome.PARTIAL)

    # And back from a cache loss: 10,000 markers written in slices by one script.
    await cache.delete("huge")
    done = [(i, "s" if i % 3 == 0 else "f") for i in range(total)]
    terminal = TerminalRecord(JobStatus.FAILED, T0 + 2, s.error)
    await cache.restore("huge", job(total), done, T0 + 5, started_at=T0 + 1, terminal=terminal)
    assert (await snap(cache, "huge")).to_doc() == s.to_doc()
    assert await redis.hlen(cache.key("huge")) == 18 + total  # 18 job fields, one marker each


async def test_restore_after_cache_loss_reproduces_the_snapshot(cache: JobStateCache) -> None:
    await cache.init_job("j", job(6, deadline=T0 + 600))
    done = [(0, "s"), (1, "f"), (4, "s")]
    await cache.mark_running("j", [0, 1, 4], T0 + 1)
    await cache.record_results("j", done, T0 + 2)
    before = await snap(cache, "j")

    assert await cache.delete("j")
    assert await cache.get_status("j") is None
    with pytest.raises(CacheMiss):
        await cache.record_results("j", [(2, "s")], T0 + 3)
    out = await cache.restore("j", job(6, deadline=T0 + 600), done, T0 + 9, started_at=T0 + 1)
    assert (out.restored, out.status, out.became_terminal) == (True, JobStatus.RUNNING, False)
    after = await snap(cache, "j")
    assert msgspec.structs.replace(after, rev=before.rev) == before
    assert after.etag != before.etag and after.rev > before.rev

    # Replays of what was counted before the loss count nothing; the rest finishes the job.
    rest = await cache.record_results("j", [(0, "s"), (2, "s"), (3, "s"), (5, "f")], T0 + 10)
    assert (rest.newly_counted, rest.became_terminal, rest.outcome) == (3, True, Outcome.PARTIAL)


async def test_restore_of_a_cancelled_job_keeps_its_error(cache: JobStateCache) -> None:
    await cache.init_job("c", job(4))
    await cache.record_results("c", [(0, "s")], T0 + 1)
    await cache.fail_remaining("c", "cancelled", "cancelled by the tenant", T0 + 2)
    before = await snap(cache, "c")
    await cache.delete("c")
    # Only some failed rows reached the store before the loss: the rest still count failed.
    terminal = TerminalRecord(JobStatus.FAILED, T0 + 2, before.error)
    out = await cache.restore("c", job(4), [(0, "s"), (1, "f")], T0 + 9, started_at=T0 + 1,
                              terminal=terminal)
    assert (out.restored, out.became_terminal, out.outcome) == (True, False, Outcome.PARTIAL)
    assert (await snap(cache, "c")).to_doc() == before.to_doc()


async def test_restore_of_a_job_finished_in_the_lost_cache(cache: JobStateCache) -> None:
    out = await cache.restore("j", job(2), [(0, "s"), (1, "s")], T0 + 9)
    assert (out.status, out.outcome, out.became_terminal) == (
        JobStatus.SUCCEEDED, Outcome.ALL_SUCCEEDED, True)
    s = await snap(cache, "j")
    assert (s.started_at, s.finished_at, counts(s)) == (T0 + 9, T0 + 9, (0, 0, 2, 0))


async def test_restore_never_overwrites_a_live_hash(cache: JobStateCache) -> None:
    await cache.init_job("j", job(3))
    await cache.record_results("j", [(0, "s"), (1, "s")], T0 + 1)
    before = await snap(cache, "j")
    out = await cache.restore("j", job(3), [], T0 + 2)
    assert not out.restored and not out.became_terminal
    assert await snap(cache, "j") == before


async def test_an_expired_job_is_neither_created_nor_restored(cache: JobStateCache) -> None:
    gone = job(2, expires_at=time.time() - 1)
    assert not await cache.init_job("old", gone)
    out = await cache.restore("old", gone, [(0, "s")], T0)
    assert not out.restored
    assert await cache.get_status("old") is None


async def test_restore_rejects_impossible_records(cache: JobStateCache) -> None:
    with pytest.raises(ValueError, match="conflicting"):
        await cache.restore("j", job(3), [(0, "s"), (0, "f")], T0)
    with pytest.raises(ValueError, match="store says succeeded"):
        await cache.restore("j", job(3), [(0, "s")], T0,
                            terminal=TerminalRecord(JobStatus.SUCCEEDED, T0))
    with pytest.raises(ValueError, match="TerminalRecord"):
        await cache.restore("j", job(3), [], T0, terminal=TerminalRecord(JobStatus.RUNNING, T0))
    assert await cache.get_status("j") is None


async def test_missing_key_raises_cache_miss_and_creates_nothing(
    cache: JobStateCache, redis: Redis
) -> None:
    assert await cache.get_status("nope") is None
    for call in (cache.mark_running("nope", [0], T0),
                 cache.record_results("nope", [(0, "s")], T0),
                 cache.fail_remaining("nope", "cancelled", "x", T0)):
        with pytest.raises(CacheMiss) as info:
            await call
        assert info.value.retryable and info.value.job_id == "nope"
    assert await redis.exists(cache.key("nope")) == 0


async def test_out_of_range_index_is_rejected_before_any_write(cache: JobStateCache) -> None:
    await cache.init_job("j", job(3))
    before = await snap(cache, "j")
    with pytest.raises(CacheRejected, match=r"outside 0\.\.2"):
        await cache.record_results("j", [(0, "s"), (3, "s")], T0)
    with pytest.raises(CacheRejected, match=r"outside 0\.\.2"):
        await cache.mark_running("j", [1, -1], T0)
    with pytest.raises(ValueError):
        await cache.record_results("j", [(0, "x")], T0)
    assert await snap(cache, "j") == before


async def test_get_status_is_one_hmget_without_markers(cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j", job(5000))
    await cache.record_results("j", [(i, "s") for i in range(4000)], T0)
    await redis.config_resetstat()
    s = await snap(cache, "j")
    stats = await redis.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == 1
    assert not any(k in stats for k in ("cmdstat_hgetall", "cmdstat_hkeys", "cmdstat_hvals",
                                        "cmdstat_hscan"))
    assert not any(name.startswith("i:") for name in msgspec.structs.asdict(s))
    assert counts(s) == (1000, 0, 4000, 0)


async def test_status_document_and_etag(redis_url: str) -> None:
    # decode_responses=True must work as well as raw bytes.
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        cache = JobStateCache(client, key_prefix="t:")
        await cache.init_job("j", job(2, expires_at=T0 + 86400 * 3650))
        s1 = await snap(cache, "j")
        assert s1.etag == (await snap(cache, "j")).etag
        await cache.record_results("j", [(0, "s")], T0 + 0.5)
        s2 = await snap(cache, "j")
        assert s2.etag != s1.etag and s2.etag.startswith('"') and s2.etag.endswith('"')
        doc = s2.to_doc()
        assert (doc.job_id, doc.model, doc.model_version, doc.priority) == (
            "j", "minilm", 2, Priority.BATCH)
        assert (doc.created_at, doc.started_at) == (
            "2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.750Z")
        assert doc.expires_at.endswith("Z") and doc.status == JobStatus.RUNNING
        assert await client.exists("t:j") == 1
    finally:
        await client.aclose()


async def test_noeviction_check(redis: Redis) -> None:
    await check_noeviction(redis)  # the fixture server runs with noeviction
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(CacheMisconfigured, match="set it to 'noeviction'") as info:
        await check_noeviction(redis)
    assert not info.value.retryable


async def test_noeviction_check_warns_when_config_is_disabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    proc = ServerProcess("redis-server", [
        str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        "--dir", str(tmp_path), "--rename-command", "CONFIG", "",
    ], "127.0.0.1", port).start()
    client = Redis(host="127.0.0.1", port=port)
    try:
        with caplog.at_level(logging.WARNING, logger="store.redis_errors"):
            await check_noeviction(client)
        assert "noeviction" in caplog.text
    finally:
        await client.aclose()
        proc.stop()


async def test_redis_down_is_cache_unavailable(redis_proc: ServerProcess, redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    cache = JobStateCache(client)
    try:
        await cache.init_job("j", job(2))
        redis_proc.stop()
        for call in (cache.get_status("j"), cache.ping(), cache.mark_running("j", [0], T0),
                     cache.record_results("j", [(0, "s")], T0), check_noeviction(client)):
            with pytest.raises(CacheUnavailable) as info:
                await call
            assert info.value.retryable
        redis_proc.start()
        await cache.ping()
        # The server came back from its append-only file; NOSCRIPT is handled by redis-py.
        out = await cache.record_results("j", [(0, "s")], T0 + 1)
        assert (out.newly_counted, out.status) == (1, JobStatus.RUNNING)
    finally:
        await client.aclose()


async def test_backlog_counts_items_not_yet_terminal_exactly_once(cache: JobStateCache) -> None:
    await cache.init_job("b1", job(10, tenant="acme"))
    await cache.init_job("b1", job(10, tenant="acme"))  # a second init adds nothing
    await cache.init_job("b2", job(5, tenant="other", priority=Priority.INTERACTIVE))
    bl = await cache.backlog()
    assert bl.models == {("minilm", "batch"): 10, ("minilm", "interactive"): 5}
    assert bl.tenants == {"acme": 10, "other": 5}
    await cache.record_results("b1", [(0, "s"), (1, "f"), (2, "s")], T0)
    await cache.record_results("b1", [(0, "s"), (1, "f")], T0)  # replay: nothing leaves twice
    assert await cache.tenant_backlog("acme") == 7
    await cache.fail_remaining("b2", "cancelled", "cancelled by the client", T0)
    assert await cache.tenant_backlog("other") == 0
    # Cache loss: restore adds back only what is not done yet.
    await cache.delete("b1")
    await cache._redis.delete("inferq:backlog")  # the loss took the counters too
    await cache.restore("b1", job(10, tenant="acme"), [(0, "s"), (1, "f"), (2, "s")], T0)
    assert await cache.tenant_backlog("acme") == 7
    assert (await cache.backlog()).models == {("minilm", "batch"): 7}
