"""Hot reads on one pipelined Redis connection, for the gateway's status polls.

A status poll is one ``HMGET``. Through redis-py it also takes a connection from the pool,
checks its health, arms a timeout, packs the command in Python, waits on a stream reader and
hands it back: about a third of a poll's CPU in a profile under load. Here many reads share
one socket — written as they come, their replies matched in order by hiredis's parser in the
protocol's ``data_received`` — so a read is a ``write`` and a future.

Same contract as redis-py for the caller: redis-py's exceptions (``ConnectionError``,
``TimeoutError``, ``ResponseError``, ``AuthenticationError``), so ``redis_errors`` maps them
to the cache's typed errors as before. A read that times out closes the connection (every
read in flight on it fails; the next read reconnects): a reply that late means the pipe can
no longer be trusted to be in step. Connection settings (host, port or unix socket, db, ACL
user, TLS with the same verified context as ``open_redis``) come from the same URL and
settings.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

import hiredis
from redis import exceptions as rexc
from redis.asyncio.connection import SSLConnection, parse_url

from core.config import Settings
from core.tls import TlsFiles
from store.redis_client import SOCKET_TIMEOUT_S

CONNECT_TIMEOUT_S = 2.0


class _Pipe(asyncio.Protocol):
    """One connection: replies resolve the oldest waiting future, in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:  # a reply nobody asked for: out of step
                self.transport.close()
                return
            fut = self.waiting.popleft()
            if fut.done():  # cancelled by its caller; the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_reply_error(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(rexc.ConnectionError(f"redis connection lost: {exc or 'closed'}"))


def _reply_error(message: str) -> rexc.RedisError:
    if message.startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
        return rexc.AuthenticationError(message)
    return rexc.ResponseError(message)


def pack(*args: str | bytes) -> bytes:
    """A command in the RESP protocol."""
    return hiredis.pack_command(args)


class PipelinedReads:
    """Read commands over one pipelined connection, opened on first use and reopened after a
    failure. ``hmget`` is the one the gateway needs."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout_s: float = 5.0):
        opts = parse_url(url)
        self._path = opts.get("path")
        self._host, self._port = opts.get("host", "localhost"), opts.get("port", 6379)
        self._db = int(opts.get("db", 0) or 0)
        self._username = username or opts.get("username")
        self._password = password or opts.get("password")
        if opts.get("connection_class") is SSLConnection and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._pipe: _Pipe | None = None
        self._opening: asyncio.Lock | None = None

    async def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        """``HMGET key field...``: the values (None for a missing field or key)."""
        return await self.execute(pack("HMGET", key, *fields))

    async def execute(self, command: bytes):
        """Send a packed command and wait for its reply."""
        pipe = self._pipe
        if pipe is None or pipe.lost:
            pipe = await self._open()
        fut = asyncio.get_running_loop().create_future()
        pipe.waiting.append(fut)
        pipe.transport.write(command)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await fut
        except TimeoutError:
            pipe.transport.close()  # out of step from here on: start afresh
            raise rexc.TimeoutError("Timeout reading from redis") from None

    async def _open(self) -> _Pipe:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pipe is not None and not self._pipe.lost:
                return self._pipe
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    if self._path:
                        _, pipe = await loop.create_unix_connection(_Pipe, self._path)
                    else:
                        _, pipe = await loop.create_connection(
                            _Pipe, self._host, self._port, ssl=self._ssl,
                            server_hostname=self._host if self._ssl else None)
            except (OSError, TimeoutError) as exc:
                raise rexc.ConnectionError(f"cannot connect to redis: {exc!r}") from exc
            setup = []
            if self._password:
                setup.append(("AUTH", self._username, self._password) if self._username
                             else ("AUTH", self._password))
            if self._db:
                setup.append(("SELECT", str(self._db)))
            futs = []
            for cmd in setup:
                futs.append(loop.create_future())
                pipe.waiting.append(futs[-1])
                pipe.transport.write(pack(*cmd))
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    for f in futs:
                        await f
            except BaseException:
                pipe.transport.close()
                raise
            self._pipe = pipe
            return pipe

    async def close(self) -> None:
        """Close the connection (reads in flight fail); a later read reopens it."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None and pipe.transport is not None:
            pipe.transport.close()


def open_configured_reads(settings: Settings) -> PipelinedReads | None:
    """The pipelined reads of ``settings``' Redis (its URL, ACL user and TLS files, as
    ``open_configured_redis``), or None when ``redis_pipelined_reads`` is off."""
    if not settings.redis_pipelined_reads:
        return None
    tls = TlsFiles(settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)
    context = tls.context() if settings.redis_url.startswith("rediss://") else None
    return PipelinedReads(settings.redis_url, username=settings.redis_username,
                          password=settings.redis_password, ssl_context=context,
                          timeout_s=SOCKET_TIMEOUT_S)
