"""``loadtest/capacity.py``: μ from the counters a scheduler and a runner export, and the
runners a target rate needs."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest


@pytest.fixture
def capacity(monkeypatch):
    monkeypatch.syspath_prepend("loadtest")  # the harness imports by bare name, as Locust does
    import capacity

    return capacity


def exposition(metric: str, labels: list[str], observations: list[tuple[tuple, float]]) -> str:
    registry = CollectorRegistry()
    h = Histogram(metric, "test", labels, registry=registry)
    for values, x in observations:
        h.labels(*values).observe(x)
    return generate_latest(registry).decode()


def test_mu_is_batched_items_over_inference_seconds_across_roles(capacity) -> None:
    totals = capacity.Totals()
    # the scheduler: three batches of 10, 20 and 30 items in two buckets
    capacity.add(totals, exposition("inferq_batch_size", ["model", "bucket"], [
        (("minilm", "32"), 10), (("minilm", "32"), 20), (("minilm", "64"), 30)]))
    # two runners: 0.25 s and 0.35 s of inference
    capacity.add(totals, exposition("inferq_inference_seconds", ["model", "backend", "bucket"],
                                    [(("minilm", "simulated", "32"), 0.25)]))
    capacity.add(totals, exposition("inferq_inference_seconds", ["model", "backend", "bucket"],
                                    [(("minilm", "simulated", "64"), 0.35)]))
    assert (totals.batched_items, totals.batches, totals.runners) == (60, 3, 2)
    assert totals.mu == pytest.approx(100.0)


def test_runners_needed_rounds_up_at_the_busy_target(capacity) -> None:
    assert capacity.runners_needed(1000, 92, 0.7) == 16
    assert capacity.runners_needed(64, 92, 0.7) == 1
    assert capacity.runners_needed(65, 92, 0.7) == 2


def test_a_non_loopback_url_is_refused(capacity, capsys) -> None:
    assert capacity.main(["http://example.com:9000/metrics"]) == 2
    assert "refused" in capsys.readouterr().err
