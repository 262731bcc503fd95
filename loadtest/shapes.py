"""A step ramp for capacity planning: hold each load level long enough to read a steady state.

Kept out of ``locustfile.py`` on purpose: Locust uses any shape class it finds and then ignores
``-u/-r/-t``, which would silently change the plain headless run. Opt in by naming this file too:

    locust -f loadtest/locustfile.py,loadtest/shapes.py --headless --host http://127.0.0.1:8000

Steps come from the environment (defaults in brackets): ``INFERQ_LOADTEST_STEP_USERS`` users
added per step [5], ``INFERQ_LOADTEST_STEP_SECONDS`` per step [60], ``INFERQ_LOADTEST_STEPS``
[6], ``INFERQ_LOADTEST_SPAWN_RATE`` users/s [5]. The ramp then stops the test: it is bounded
by construction (and the locustfile's hard deadline still applies).
"""

from __future__ import annotations

import os

from locust import LoadTestShape


def _env_int(name: str, default: int, lo: int, hi: int) -> int:
    value = int(os.environ.get(name, default))
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is outside [{lo}, {hi}]")
    return value


class StepRamp(LoadTestShape):
    """``users = step_users * (k + 1)`` during step ``k``; stops after the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.step_users = _env_int("INFERQ_LOADTEST_STEP_USERS", 5, 1, 500)
        self.step_seconds = _env_int("INFERQ_LOADTEST_STEP_SECONDS", 60, 10, 1800)
        self.steps = _env_int("INFERQ_LOADTEST_STEPS", 6, 1, 50)
        self.spawn_rate = float(_env_int("INFERQ_LOADTEST_SPAWN_RATE", 5, 1, 100))

    def tick(self) -> tuple[int, float] | None:
        step = int(self.get_run_time() // self.step_seconds)
        if step >= self.steps:
            return None
        return self.step_users * (step + 1), self.spawn_rate
