"""How a batch leaves a runner: every stage's failure becomes one nak — with backoff from
Settings when a dependency failed transiently, after ``dependency_retry_s`` otherwise."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest

from core.config import Settings
from gpu_runner.records import item_error
from gpu_runner.settle import Settle, Stage, backoff_s
from schemas.bus import Batch
from schemas.errors import ErrorCode, ItemError
from store.redis_errors import CacheUnavailable


class FakeMsg:
    """The part of a JetStream message the settle stage uses."""

    def __init__(self, delivered: int = 1, ack_fails: bool = False) -> None:
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.naks: list[float | None] = []
        self.acks = 0
        self._ack_fails = ack_fails

    async def nak(self, delay: float | None = None) -> None:
        self.naks.append(delay)

    async def ack_sync(self) -> None:
        if self._ack_fails:
            raise TimeoutError("nats: timeout")
        self.acks += 1


BATCH = Batch("b1", "minilm", 1, 16, [])


def test_the_default_backoff_is_half_a_second_doubling_up_to_thirty() -> None:
    s = Settings()
    assert [backoff_s(s, n) for n in (1, 2, 3, 4, 7, 8, 20)] == [0.5, 1, 2, 4, 30, 30, 30]
    faster = replace(s, redelivery_backoff_s=0.1, redelivery_backoff_max_s=0.3)
    assert [backoff_s(faster, n) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]


async def test_a_transient_failure_naks_with_backoff_and_a_bug_after_the_retry_delay() -> None:
    settle = Settle(Settings())

    async def unavailable() -> None:
        raise CacheUnavailable("redis down")

    async def bug() -> None:
        raise KeyError("oops")

    async def fine() -> int:
        return 7

    transient, broken, ok = FakeMsg(delivered=3), FakeMsg(), FakeMsg()
    assert await settle.guard(Stage.WRITE_BACK, transient, BATCH, unavailable()) is None
    assert await settle.guard(Stage.INFER, broken, None, bug()) is None
    assert await settle.guard(Stage.INFER, ok, BATCH, fine()) == 7
    assert transient.naks == [2.0] and broken.naks == [5.0] and ok.naks == []


async def test_cancellation_is_not_a_failure() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    msg = FakeMsg()
    with pytest.raises(asyncio.CancelledError):
        await Settle(Settings()).guard(Stage.PREPARE, msg, BATCH, cancelled())
    assert msg.naks == []


async def test_only_an_ack_that_reached_nats_counts_a_batch_done() -> None:
    settle = Settle(Settings())
    assert await settle.ack(FakeMsg(), BATCH) and settle.acked == 1
    assert not await settle.ack(FakeMsg(ack_fails=True), BATCH) and settle.acked == 1


def test_an_unknown_pre_failure_code_is_kept_as_sent() -> None:
    known = item_error(ErrorCode.DEADLINE_EXCEEDED.value, "late")
    assert known == ItemError.of(ErrorCode.DEADLINE_EXCEEDED, "late")  # retryable as defined
    assert item_error("from_a_newer_scheduler", "x").code == "from_a_newer_scheduler"
