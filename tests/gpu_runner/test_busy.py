"""The busy meter: busy ratio, items and padded tokens per second of busy time."""

from __future__ import annotations

import threading
import time

from gpu_runner.busy import BusyMeter, covered


def test_capacity_and_token_rate_are_per_second_of_busy_time() -> None:
    meter = BusyMeter(window_s=30)
    assert meter.capacity() is None and meter.token_rate() is None
    with meter.busy(items=10, tokens=640):
        time.sleep(0.05)
    cap, rate = meter.capacity(), meter.token_rate()
    assert cap is not None and rate is not None
    assert rate / cap == 64  # tokens per item, whatever the time measured
    assert 100 < cap <= 10 / 0.05


def test_batches_run_side_by_side_count_their_common_time_once() -> None:
    assert covered([(0, 2), (1, 3), (5, 6)], 0, 10) == 4
    assert covered([(1, 3), (0, 2)], 1.5, 2.5) == 1  # clipped to the window
    assert covered([(0, 4), (1, 2)], 0, 10) == 4  # one inside another
    meter = BusyMeter(window_s=30)
    ends = threading.Barrier(2)

    def batch() -> None:
        with meter.busy(items=10, tokens=100):
            time.sleep(0.1)
            ends.wait()

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 items in ~0.1 s of busy time, not in 0.2 s (two overlapping spans) ...
    cap = meter.capacity()
    assert cap is not None and 150 < cap <= 200
    # ... while each batch progressed at its share's speed: 100 tokens in ~0.1 s each.
    rate = meter.token_rate()
    assert rate is not None and 750 < rate <= 1000


def test_a_quiet_window_keeps_the_last_measured_speed() -> None:
    meter = BusyMeter(window_s=1)
    with meter.busy(items=10, tokens=640):
        time.sleep(0.02)
    cap, rate = meter.capacity(), meter.token_rate()
    assert cap is not None and rate is not None
    later = time.monotonic() + 60  # the window holds nothing any more: idle, not slower
    assert meter.ratio(later) == 0.0
    assert meter.capacity(later) == cap and meter.token_rate(later) == rate
