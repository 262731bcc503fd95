"""Busy ratio: the fraction of recent wall time a runner spent inside the backend."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager


class BusyMeter:
    def __init__(self, window_s: float = 30.0):
        self._window = window_s
        self._spans: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @contextmanager
    def busy(self):
        t0 = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._spans.append((t0, time.monotonic()))

    def ratio(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        start = max(now - self._window, self._started)
        with self._lock:
            while self._spans and self._spans[0][1] < start:
                self._spans.popleft()
            busy = sum(min(e, now) - max(s, start) for s, e in self._spans if e > start)
        span = now - start
        return min(1.0, busy / span) if span > 0 else 0.0
