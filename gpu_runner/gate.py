"""The device gate: which launched batch runs on the device next, decided in the inference
threads the moment a run ends, urgent ones first.

A runner may launch more batches than its device runs at once (``Backend.ahead``): their
threads wait here, padded and ready, so the next batch starts when one ends without a round
through the runner's event loop (on an accelerator a batch takes a few ms, and the loop's
write-back and bookkeeping between two batches would otherwise idle the device for as long).
A waiting urgent (interactive-led) batch goes before any waiting batch work; among equals,
the first to wait goes first.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class DeviceGate:
    """``slots`` batches on the device at once; the rest wait in order (urgent, then
    arrival)."""

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("a device runs at least one batch at a time")
        self._free = slots
        self._waiting: list[tuple[int, int]] = []
        self._tickets = itertools.count()
        self._cond = threading.Condition()

    @property
    def waiting(self) -> int:
        """Batches waiting for the device now."""
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def hold(self, *, urgent: bool = False) -> Iterator[None]:
        """Run the block on one of the device's slots, waiting for one in turn."""
        ticket = (0 if urgent else 1, next(self._tickets))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            while not (self._free and self._waiting[0] == ticket):
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            if self._free and self._waiting:
                self._cond.notify_all()  # another slot is free: the next in turn may go
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()
