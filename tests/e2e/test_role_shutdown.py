"""Roles told to stop while NATS is gone stop cleanly and promptly: no traceback out of
``stop()`` (the process would exit non-zero and skip closing Redis and the store), no hang
until the orchestrator's kill timeout."""

from __future__ import annotations

import asyncio
import time

from core.config import Settings
from inferq.embedded import ServerProcess
from tests.e2e.harness import Service

STOP_WITHIN_S = 12.0
"""The scheduler's 5 s grace for its step, the runner's for its batch, and closing: well
inside a Nomad kill_timeout."""


async def test_every_role_stops_cleanly_after_nats_is_gone(
    settings: Settings, nats_proc: ServerProcess
) -> None:
    service = await Service(settings).start(schedulers=1, runners=1)
    nats_proc.stop()
    await asyncio.sleep(1.0)  # the clients notice and start reconnecting
    t0 = time.monotonic()
    await service.stop()
    assert time.monotonic() - t0 < STOP_WITHIN_S
