"""Work formed ahead per runner is a time budget: none on a CPU, several on an accelerator."""

from __future__ import annotations

from scheduler.credit import batches_ahead


def test_a_cpu_runner_gets_no_batch_formed_ahead() -> None:
    # ~450 items/s, batches of ~50: 50 ms is a tenth of a batch.
    assert batches_ahead(0.05, 450.0, 50.0, 8) == 0


def test_a_fast_device_gets_its_time_budget_in_batches_up_to_the_cap() -> None:
    assert batches_ahead(0.05, 4_000.0, 50.0, 8) == 4
    assert batches_ahead(0.05, 40_000.0, 50.0, 8) == 8


def test_nothing_is_formed_ahead_before_a_capacity_is_measured_or_when_disabled() -> None:
    assert batches_ahead(0.05, None, 50.0, 8) == 0
    assert batches_ahead(0.0, 40_000.0, 50.0, 8) == 0
