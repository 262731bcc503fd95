"""The size and text of a chaos scenario's jobs: short in CI, long under
``INFERQ_CHAOS_SCALE=long``; texts drawn from a fixed vocabulary with a seed."""

from __future__ import annotations

import os
import random

SCALE = os.environ.get("INFERQ_CHAOS_SCALE", "short")
LONG = SCALE == "long"


def scaled(short: int, long: int) -> int:
    """The short figure in CI, the long one under ``INFERQ_CHAOS_SCALE=long``."""
    return long if LONG else short


def corpus(n: int, seed: int) -> list[dict]:
    """``n`` inputs of 3 to 60 words with ids ``i0``, ``i1``, ...; the same for a seed."""
    rng = random.Random(seed)
    words = ("queue batch tenant runner bucket token cache store stream chunk redelivery "
             "fairness shape padding embedding result status idempotent").split()
    return [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 60))),
             "id": f"i{i}"} for i in range(n)]
