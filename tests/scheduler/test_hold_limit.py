"""How much the formers may hold: 8 of the largest batch, or a quarter second of the runners'
measured throughput where that is more (a fast device's buckets fill before it asks)."""

from __future__ import annotations

from pathlib import Path

from models.repository import ModelRepository
from scheduler.former import queue_delays
from scheduler.pipes import HOLD_BATCHES, HOLD_S, ModelPipes


def test_the_hold_limit_is_eight_batches_until_the_runners_are_faster(model_repo: Path) -> None:
    pipes = ModelPipes(ModelRepository(model_repo), queue_delays(0.05, 4.0))
    pipe = pipes.get("minilm", 1)
    eight = HOLD_BATCHES * pipe.config.max_batch_size
    assert pipes.hold_limit == eight
    pipe.hold_items = int(HOLD_S * 250)  # a CPU runner: 250 items/s
    assert pipes.hold_limit == eight
    pipe.hold_items = int(HOLD_S * 12_000)  # an accelerator: 12,000 items/s
    assert pipes.hold_limit == 3_000
