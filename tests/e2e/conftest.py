from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.harness import Service


@pytest.fixture
async def service(settings) -> AsyncIterator[Service]:
    """The three roles in this process against the test's own servers (SQLite results)."""
    svc = Service(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
