"""The event loop a role process runs on: uvloop where it is installed (fewer CPU-µs per
socket read, timer and callback than asyncio's own loop), asyncio's otherwise or on request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the named loop (None: asyncio's default). ``auto`` falls back to
    asyncio where uvloop is not installed; ``uvloop`` requires it."""
    if name not in LOOPS:
        raise ValueError(f"event loop must be one of {', '.join(LOOPS)}, not {name!r}")
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """``asyncio.run`` on the named loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)
