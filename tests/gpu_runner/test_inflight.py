"""Batches in a runner's hands: up to the backend's concurrency inferred side by side, a batch
that comes to an idle runner alone on the whole device, at most concurrency + 1 in hand."""

from __future__ import annotations

import asyncio

from gpu_runner.inflight import InFlight


class Batch:
    """A batch's work whose inference and write-back the test ends."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log
        self.infer_done, self.written = asyncio.Event(), asyncio.Event()

    async def work(self, shared: bool, inferred) -> None:
        self.log.append((self.name, "shared" if shared else "alone"))
        await self.infer_done.wait()
        inferred()
        await self.written.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def has_room(hands: InFlight) -> bool:
    waiting = asyncio.create_task(hands.room())
    await settle()
    waiting.cancel()
    return waiting.done() and not waiting.cancelled()


async def finish(hands: InFlight, *batches: Batch) -> None:
    """End the batches' inference and write-back; every batch in hand is then settled."""
    for x in batches:
        x.infer_done.set()
        x.written.set()
    await asyncio.wait_for(hands.drain(), 1)


def launch(hands: InFlight, batch: Batch, *, backlogged: bool) -> None:
    hands.launch(batch.work, backlogged=backlogged)


async def test_a_batch_for_an_idle_runner_runs_alone_then_backed_up_work_runs_side_by_side(
        ) -> None:
    hands, log = InFlight(2), []
    a, b, c, d = (Batch(n, log) for n in "abcd")
    launch(hands, a, backlogged=False)  # nothing waited behind it: the whole device
    await settle()
    assert not await has_room(hands)  # nothing starts beside a batch running alone
    a.infer_done.set()
    await settle()
    assert await has_room(hands)  # a is being written back: the device is free
    launch(hands, b, backlogged=True)  # it was waiting: work is backing up
    assert await has_room(hands)
    launch(hands, c, backlogged=False)  # b is inferring: c runs beside it
    await settle()
    assert log == [("a", "alone"), ("b", "shared"), ("c", "shared")]
    assert hands.inferring == 2 and len(hands) == 3
    a.written.set()
    await settle()
    assert not await has_room(hands)  # two inferring: the device is full
    b.infer_done.set()
    await settle()
    assert await has_room(hands)
    launch(hands, d, backlogged=False)
    await settle()
    assert log[-1] == ("d", "shared")  # c still inferring
    await finish(hands, b, c, d)
    assert len(hands) == 0 and hands.inferring == 0


async def test_write_backs_behind_hold_the_next_inference_back() -> None:
    hands, log = InFlight(2), []
    a, b, c = (Batch(n, log) for n in "abc")
    launch(hands, a, backlogged=True)
    launch(hands, b, backlogged=True)
    a.infer_done.set()
    await settle()
    launch(hands, c, backlogged=True)  # a writing, b and c inferring: 3 in hand
    b.infer_done.set()
    c.infer_done.set()
    await settle()
    assert hands.inferring == 0 and not await has_room(hands)  # a slow store: wait for it
    a.written.set()
    await settle()
    assert await has_room(hands)
    for x in (b, c):
        x.written.set()
    await asyncio.wait_for(hands.drain(), 1)


async def test_one_at_a_time_overlaps_a_write_back_with_the_next_inference() -> None:
    hands, log = InFlight(1), []
    a, b = Batch("a", log), Batch("b", log)
    launch(hands, a, backlogged=True)
    await settle()
    assert log == [("a", "alone")]  # never shared on a backend of concurrency 1
    assert not await has_room(hands)
    a.infer_done.set()
    await settle()
    assert await has_room(hands)  # a is written back while b is inferred
    launch(hands, b, backlogged=True)
    b.infer_done.set()
    await settle()
    assert not await has_room(hands)  # a and b both being written back: two in hand
    a.written.set()
    await settle()
    assert await has_room(hands)
    b.written.set()
    await asyncio.wait_for(hands.drain(), 1)


async def test_a_failing_batch_frees_its_place_and_cancel_stops_the_rest() -> None:
    hands, log = InFlight(2), []

    async def fails(shared: bool, inferred) -> None:
        raise RuntimeError("a bug past the stage guards")

    hands.launch(fails, backlogged=False)
    await settle()
    assert await has_room(hands) and len(hands) == 0
    slow = Batch("slow", log)
    launch(hands, slow, backlogged=True)
    hands.cancel()
    await asyncio.wait_for(hands.drain(), 1)
    assert len(hands) == 0 and hands.inferring == 0


async def test_a_device_that_works_apart_from_the_cpu_gets_the_next_batch_launched_ahead(
        ) -> None:
    hands, log = InFlight(1, ahead=1), []
    a, b, c, d = (Batch(n, log) for n in "abcd")
    launch(hands, a, backlogged=False)
    assert await has_room(hands)  # b may wait at the device while a runs
    launch(hands, b, backlogged=True)
    await settle()
    assert not await has_room(hands)  # one on the device, one waiting: full
    assert log == [("a", "alone"), ("b", "alone")]  # concurrency 1: never shared
    a.infer_done.set()
    await settle()
    assert await has_room(hands)  # b took the device; c may wait behind it
    launch(hands, c, backlogged=True)
    b.infer_done.set()
    await settle()
    # a and b written back side by side (one write-back more per batch ahead), c inferring:
    # d may wait at the device behind it.
    assert len(hands) == 3 and await has_room(hands)
    launch(hands, d, backlogged=True)
    c.infer_done.set()
    await settle()
    assert len(hands) == 4 and not await has_room(hands)  # three written back: the store waits
    a.written.set()
    await settle()
    assert await has_room(hands)
    await finish(hands, b, c, d)
    assert len(hands) == 0 and hands.inferring == 0


async def test_nothing_waits_ahead_at_the_device_while_interactive_work_flows() -> None:
    now = [100.0]
    hands, log = InFlight(1, ahead=1, urgent_window_s=10.0, clock=lambda: now[0]), []
    u, a, b = (Batch(n, log) for n in "uab")
    hands.launch(u.work, backlogged=False, urgent=True)
    assert hands.queue_ahead == 0 and not await has_room(hands)  # nothing queues behind u
    u.infer_done.set()
    u.written.set()
    await settle()
    now[0] += 9.0
    launch(hands, a, backlogged=True)
    assert not await has_room(hands)  # 9 s after an urgent batch: still one at a time
    now[0] += 1.0
    assert hands.queue_ahead == 1 and await has_room(hands)  # batch work only: queue ahead
    launch(hands, b, backlogged=True)
    assert not await has_room(hands)
    await finish(hands, a, b)
