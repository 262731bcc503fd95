"""A job-level failure (cancel, deadline, no model) fails every item not yet done, once, and
ends the job failed with its error (real redis-server)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from schemas.errors import JobError
from schemas.states import JobStatus, Outcome
from store.jobstate import JobStateCache, TerminalRecord
from tests.store.jobstate_helpers import T0, counts, job, snap


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
