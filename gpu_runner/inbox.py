"""The runner's inbox: the next batch to run, urgent first.

Receive loops run beside the inference, one per source: the model version's batch work and its
urgent (interactive-led) batches. Each keeps one batch received and prepared ahead. The runner
takes a ready urgent batch before the batch work it holds, so an interactive item waits behind
at most the batch on the device, not behind the batch work prefetched or formed ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from gpu_runner.prepare import Prepared

Receive = Callable[[], Awaitable[Prepared | None]]
"""One receive-and-prepare of a source: the batch ready to run, or None (nothing came within
the pull's timeout, or the batch was settled while prepared)."""


class Inbox:
    """The sources' receive loops, each one batch ahead, and the choice among their batches."""

    def __init__(self, receives: Sequence[Receive]):
        """``receives`` in order of precedence: an earlier source's ready batch goes first."""
        self._receives = list(receives)
        self._tasks: list[asyncio.Task | None] = [None] * len(self._receives)
        self.backlogged = False
        """Whether the batch ``next`` last returned was ready before it was asked for: work is
        backing up (the runner then runs batches side by side, see ``gpu_runner.inflight``)."""

    def _start_missing(self) -> None:
        for i, task in enumerate(self._tasks):
            if task is None:
                self._tasks[i] = asyncio.create_task(self._receives[i](), name=f"receive-{i}")

    async def next(self) -> Prepared | None:
        """The first ready source's batch by precedence, waiting for one to be ready; that
        source starts receiving its next batch at once. None: the source came back empty
        (ask again). A source's exception is raised, and it starts over on the next call."""
        self._start_missing()
        tasks = [t for t in self._tasks if t is not None]
        self.backlogged = any(t.done() for t in tasks)
        if not self.backlogged:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for i, task in enumerate(self._tasks):
            if task is not None and task.done():
                self._tasks[i] = None
                work = task.result()  # raises the source's failure
                self._start_missing()
                return work
        return None  # unreachable: asyncio.wait returned with one done

    async def close(self) -> list[Prepared]:
        """Stop every receive; the batches already received and prepared, to give back."""
        tasks, self._tasks = self._tasks, [None] * len(self._receives)
        held: list[Prepared] = []
        for task in tasks:
            if task is None:
                continue
            task.cancel()
            try:
                work = await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - leaving anyway
                continue
            if work is not None:
                held.append(work)
        return held
