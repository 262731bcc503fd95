"""The busy meter: busy ratio, items and padded tokens per second of busy time."""

from __future__ import annotations

import time

from gpu_runner.busy import BusyMeter


def test_capacity_and_token_rate_are_per_second_of_busy_time() -> None:
    meter = BusyMeter(window_s=30)
    assert meter.capacity() is None and meter.token_rate() is None
    with meter.busy(items=10, tokens=640):
        time.sleep(0.05)
    cap, rate = meter.capacity(), meter.token_rate()
    assert cap is not None and rate is not None
    assert rate / cap == 64  # tokens per item, whatever the time measured
    assert 100 < cap <= 10 / 0.05
