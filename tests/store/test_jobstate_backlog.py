"""The backlog counters: items accepted but not yet terminal, per model and per tenant."""

from __future__ import annotations

from schemas.states import Priority
from store.jobstate import JobStateCache
from tests.store.jobstate_helpers import T0, job


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
