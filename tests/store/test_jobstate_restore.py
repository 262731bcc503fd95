"""Redis is a cache: a lost job hash raises CacheMiss, and ``restore`` rebuilds it from the
result store's rows exactly as it was, or refuses records that cannot all be true."""

from __future__ import annotations

import time

import msgspec
import pytest
from redis.asyncio import Redis

from schemas.states import JobStatus, Outcome
from store.jobstate import JobStateCache, TerminalRecord
from store.redis_errors import CacheMiss
from tests.store.jobstate_helpers import T0, counts, job, snap


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
