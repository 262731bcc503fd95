"""Each role as an object with ``start()`` and an idempotent ``stop()``, opening and closing its
own connections. The command line wraps these with signal handling; tests drive them directly.

One module per role, each importing only what that role runs: ``inferq gateway`` never loads
an inference runtime, ``inferq scheduler`` never loads the HTTP stack. Import the role from its
module (``from inferq.roles.gateway import GatewayRole``); the names below resolve lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_ROLES = {
    "GatewayRole": "inferq.roles.gateway",
    "SchedulerRole": "inferq.roles.scheduler",
    "RunnerRole": "inferq.roles.runner",
}

__all__ = list(_ROLES)


def __getattr__(name: str) -> Any:
    module = _ROLES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
