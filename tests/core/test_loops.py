"""Role processes run on uvloop where it is installed, asyncio's loop on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from core.loops import loop_factory, run


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_auto_and_uvloop_run_on_uvloop_and_asyncio_on_asyncios_own() -> None:
    assert run(loop_type(), "auto") is uvloop.Loop
    assert run(loop_type(), "uvloop") is uvloop.Loop
    assert not issubclass(run(loop_type(), "asyncio"), uvloop.Loop)


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="auto, asyncio, uvloop"):
        loop_factory("trio")
