"""Stopping a long-running asyncio task: wait for it to finish on its own, then cancel."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task | None, grace: float) -> None:
    """Give ``task`` up to ``grace`` seconds to finish after its stop event was set, then cancel
    it and wait for the cancellation (a hard deadline, never a hang)."""
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
        # Bounded too: a library that swallows the cancellation must not hang shutdown.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait({task}, timeout=5.0)
