"""The gateway role: uvicorn serving the Litestar app."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from core import otel
from core.config import Settings
from gateway.app import create_app
from gateway.server import server_config


class GatewayRole:
    """uvicorn serving the Litestar app on the configured host and port (or a given socket)."""

    def __init__(self, settings: Settings, sock: socket.socket | None = None):
        self.settings = settings
        self._sock = sock
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self._otel = False

    async def start(self) -> None:
        """Serve until ``stop()``; returns once the listener is up (raises if start-up fails)."""
        self._otel = otel.install(self.settings)  # spans exported only with otlp_endpoint
        app = create_app(self.settings)
        config = server_config(app, self.settings)  # hostile-client limits included
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the entry point owns signals
        sockets = [self._sock] if self._sock else None
        self._task = asyncio.create_task(self._server.serve(sockets=sockets))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("gateway exited during start-up")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight, run the app's shutdown. Idempotent."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            await task
        if self._otel:
            self._otel = False
            await otel.release()
