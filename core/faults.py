"""Fault injection for chaos tests: crash the process the hard way at named points.

Off unless the entry point calls ``configure`` with a spec such as
``"runner.after_upsert:0.2,scheduler.after_publish:1"`` (from ``INFERQ_FAULTS``) —
a crash point name and the probability that passing it kills the process with ``os._exit``.
An optional seed (``INFERQ_FAULTS_SEED``) makes runs repeatable.
"""

from __future__ import annotations

import os
import random
import sys

POINTS = frozenset({
    "runner.after_inference",
    "runner.after_upsert",
    "runner.after_redis",
    "runner.after_ack",
    "scheduler.after_publish",
    "scheduler.before_ack",
    "gateway.after_idempotency_record",
    "gateway.mid_publish",
    "gateway.file_mid_publish",
})

_armed: dict[str, float] = {}
_poison: set[str] = set()
_rng = random.Random()
EXIT_CODE = 86


def configure(spec: str | None, seed: int | None = None, poison_ids: str | None = None) -> None:
    """Arm crash points (``spec``) and poison items (comma-separated client ids whose
    inference kills the runner, every time: ``INFERQ_FAULTS_POISON_IDS``)."""
    _armed.clear()
    _poison.clear()
    _poison.update(p.strip() for p in (poison_ids or "").split(",") if p.strip())
    if seed is not None:
        _rng.seed(seed)
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, prob = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"unknown crash point {name!r}; known: {sorted(POINTS)}")
        _armed[name] = float(prob or 1.0)


def crash_point(name: str) -> None:
    """Kill the process here with the configured probability (no cleanup, as a crash would)."""
    p = _armed.get(name)
    if p and _rng.random() < p:
        sys.stderr.write(f"inferq: fault injected at {name}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)


def crash_if_poison(client_ids: list[str | None]) -> None:
    """Kill the process if a batch about to run holds a poison item (chaos tests)."""
    if _poison and any(c in _poison for c in client_ids):
        sys.stderr.write("inferq: poison item in batch: crashing\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
