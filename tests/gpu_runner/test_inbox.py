"""The runner's inbox: a ready urgent batch goes before the batch work held, each source keeps
one batch ahead, a failed source starts over, and closing hands back what was received."""

from __future__ import annotations

import asyncio

import pytest

from gpu_runner.inbox import Inbox


class Source:
    """A receive stage whose batches the test releases one at a time."""

    def __init__(self, name: str):
        self.name = name
        self.queue: asyncio.Queue = asyncio.Queue()
        self.calls = 0

    async def receive(self):
        self.calls += 1
        item = await self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_ready_urgent_batch_goes_before_the_batch_work_already_received() -> None:
    urgent, bulk = Source("urgent"), Source("bulk")
    inbox = Inbox([urgent.receive, bulk.receive])
    bulk.queue.put_nowait("b1")
    assert await inbox.next() == "b1"
    bulk.queue.put_nowait("b2")  # received and prepared while b1 runs
    await settle()
    urgent.queue.put_nowait("u1")
    await settle()
    assert await inbox.next() == "u1"  # both ready: urgent first
    assert await inbox.next() == "b2"
    assert await inbox.close() == []


async def test_each_source_keeps_exactly_one_batch_ahead() -> None:
    urgent, bulk = Source("urgent"), Source("bulk")
    inbox = Inbox([urgent.receive, bulk.receive])
    for b in ("b1", "b2", "b3"):
        bulk.queue.put_nowait(b)
    assert await inbox.next() == "b1"
    await settle()
    assert bulk.calls == 2  # b2 received ahead, b3 not yet asked for
    assert bulk.queue.qsize() == 1
    assert await inbox.next() == "b2"


async def test_an_empty_pull_comes_back_as_none_and_the_source_asks_again() -> None:
    bulk = Source("bulk")
    inbox = Inbox([bulk.receive])
    bulk.queue.put_nowait(None)
    assert await inbox.next() is None
    bulk.queue.put_nowait("b1")
    assert await inbox.next() == "b1"


async def test_a_failed_source_raises_once_and_starts_over_on_the_next_call() -> None:
    urgent, bulk = Source("urgent"), Source("bulk")
    inbox = Inbox([urgent.receive, bulk.receive])
    urgent.queue.put_nowait(ConnectionError("nats reconnecting"))
    with pytest.raises(ConnectionError):
        await inbox.next()
    calls = urgent.calls
    urgent.queue.put_nowait("u1")
    assert await inbox.next() == "u1"
    assert urgent.calls == calls + 1
    await inbox.close()


async def test_closing_hands_back_the_batches_received_but_not_taken() -> None:
    urgent, bulk = Source("urgent"), Source("bulk")
    inbox = Inbox([urgent.receive, bulk.receive])
    bulk.queue.put_nowait("b1")
    assert await inbox.next() == "b1"
    bulk.queue.put_nowait("b2")
    await settle()
    assert await inbox.close() == ["b2"]  # the urgent pull still waiting is just cancelled
