"""Busy ratio and throughput: how much of recent wall time a runner spent inside the backend,
and how many items it finished — together, its capacity (items/s when fully busy)."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager


def covered(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] inside at least one span: batches run side by side count
    their common time once."""
    total, reach = 0.0, start
    for s, e in sorted(spans):
        s, e = max(s, reach), min(e, end)
        if e > s:
            total += e - s
            reach = e
    return total


class BusyMeter:
    """Spans of backend work over a sliding window (several may overlap: batches run side
    by side); written by the inference threads, read by the heartbeat."""

    def __init__(self, window_s: float = 30.0):
        self._window = window_s
        self._spans: deque[tuple[float, float, int, int]] = deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._capacity: float | None = None
        self._token_rate: float | None = None

    @contextmanager
    def busy(self, items: int = 0, tokens: int = 0):
        """Time the block as busy, doing ``items`` items of ``tokens`` padded tokens."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._spans.append((t0, time.monotonic(), items, tokens))

    def _window_spans(self, now: float) -> tuple[float, list[tuple[float, float, int, int]]]:
        start = max(now - self._window, self._started)
        with self._lock:
            while self._spans and self._spans[0][1] < start:
                self._spans.popleft()
            return start, list(self._spans)

    def _busy(self, now: float) -> tuple[float, list[tuple[float, float, int, int]]]:
        """Busy seconds of the spans in the window (whole spans, overlaps counted once)."""
        _, spans = self._window_spans(now)
        return covered([(s, e) for s, e, _, _ in spans], float("-inf"), float("inf")), spans

    def ratio(self, now: float | None = None) -> float:
        """Fraction of the window (or of the time since start, if shorter) spent busy."""
        now = time.monotonic() if now is None else now
        start, spans = self._window_spans(now)
        busy = covered([(s, e) for s, e, _, _ in spans], start, now)
        span = now - start
        return min(1.0, busy / span) if span > 0 else 0.0

    def capacity(self, now: float | None = None) -> float | None:
        """Items per second of busy time over the window; after a quiet window, the last
        measured (a device idle for a while is no slower: the schedulers keep forming work
        ahead for it from its first batch); None before any work."""
        now = time.monotonic() if now is None else now
        busy, spans = self._busy(now)
        items = sum(n for _, _, n, _ in spans)
        if busy > 0 and items > 0:
            self._capacity = items / busy
        return self._capacity

    def token_rate(self, now: float | None = None) -> float | None:
        """Padded tokens per second of a batch's own run over the window (after a quiet
        window, the last measured); None before any work. Sizes batches by time
        (``Settings.batch_time_budget_s``), whatever their shape: batches run side by side
        each progress at their share's speed, so this adds their durations rather than
        counting common time once (as ``capacity`` does)."""
        now = time.monotonic() if now is None else now
        _, spans = self._window_spans(now)
        took = sum(e - s for s, e, _, _ in spans)
        tokens = sum(t for _, _, _, t in spans)
        if took > 0 and tokens > 0:
            self._token_rate = tokens / took
        return self._token_rate
