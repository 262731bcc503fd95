"""A real HTTP receiver for webhook tests: a tiny HTTP/1.1 server on a free loopback port
that answers each request with the next scripted status (or holds it unanswered), and keeps
what it got."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

HANG = -1
"""A scripted answer that never comes (the connection is held until ``release``)."""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None = None


@dataclass
class Receiver:
    script: list[int] = field(default_factory=list)
    """Answers to the first requests in order; 200 after the script runs out."""
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/hooks/inferq"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        self._server.close()
        await self._server.wait_closed()

    def release(self) -> None:
        """Let held requests go (their connections close unanswered)."""
        self._release.set()

    @property
    def successes(self) -> list[Received]:
        return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]

    async def wait_for(self, n: int, within: float = 30.0) -> None:
        async def enough() -> None:
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), within)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {}
            for line in lines:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            got = Received(headers, body)
            answer = self.script[len(self.received)] if len(self.received) < len(
                self.script) else 200
            self.received.append(got)
            self.arrived.set()
            if answer == HANG:
                await self._release.wait()
                return
            got.answered = answer
            writer.write(f"HTTP/1.1 {answer} X\r\ncontent-length: 0\r\n"
                         f"connection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
