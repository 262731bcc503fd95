"""The one way every role opens Redis: fail fast (2 s to connect, 5 s per call) and check idle
sockets, so a Redis that went away surfaces as ``CacheUnavailable`` instead of a hang."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as rexc

from core.config import Settings
from core.tls import TlsConfigError, TlsFiles

SOCKET_TIMEOUT_S = 5.0


class CPackedCommands:
    """Commands packed by hiredis (C) rather than redis-py's Python packer, where the bytes
    are provably the same: every argument a ``str``, ``bytes`` or ``int`` (written as
    redis-py writes it, ``str(n)``; a float or anything else goes to redis-py, which formats
    it its own way) and the client's encoding UTF-8 with strict errors. A runner's batch
    write-back sends ~1,300 arguments (four per item), which redis-py takes ~1.5 ms of CPU to
    pack and hiredis ~0.1 ms."""

    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        enc = self.encoder
        if (args and enc.encoding.lower().replace("-", "") == "utf8"
                and enc.encoding_errors == "strict" and all(type(a) in _EXACT for a in args)):
            args = tuple(str(a) if type(a) is int else a for a in args)
            first = args[0].encode() if type(args[0]) is str else args[0]
            if b" " in first:  # "CONFIG GET": the server wants the words apart (as redis-py)
                args = (*first.split(), *args[1:])
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)  # type: ignore[misc]


_EXACT = (str, bytes, int)
"""Argument types whose bytes hiredis writes as redis-py does (``bool``, an ``int``
subclass, is not among them: ``type(a) in``, not ``isinstance``)."""


class TimedWriteConnection(CPackedCommands, aioredis.Connection):
    """redis-py's connection, with the write's timeout kept by ``asyncio.timeout`` instead of
    ``asyncio.wait_for``: on Python 3.11 ``wait_for`` wraps every command's write in a new
    task, a few percent of a status poll's CPU. Same errors: a timed-out write disconnects
    and raises redis's ``TimeoutError``."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes],
                                  check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        try:
            async with asyncio.timeout(timeout):
                self.socket_timeout = None  # the base class then writes without wait_for
                try:
                    await super().send_packed_command(command, check_health)
                finally:
                    self.socket_timeout = timeout
        except TimeoutError:  # asyncio's (redis's own TimeoutError is not one)
            await self.disconnect(nowait=True)
            raise rexc.TimeoutError("Timeout writing to socket") from None


class CPackedSSLConnection(CPackedCommands, aioredis.SSLConnection):
    """redis-py's TLS connection, with commands packed by hiredis where that is exact."""


def open_redis(url: str, *, username: str | None = None, password: str | None = None,
               tls: TlsFiles | None = None) -> aioredis.Redis:
    """A client for ``url``; connects lazily on first use.

    ``username``/``password`` (a Redis ACL user) override the URL's. TLS is the URL's choice
    (``rediss://``), verifying the server's certificate and name against ``tls.ca`` (else
    the system's trust store); ``tls`` files with a plain ``redis://`` URL are refused, so a
    connection meant to be encrypted never silently is not."""
    options: dict = {}
    if username:
        options["username"] = username
    if password:
        options["password"] = password
    tls = tls or TlsFiles()
    if url.startswith("rediss://"):
        tls.context()  # fail now, naming the files, if they are unusable
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True,
                       ssl_ca_certs=tls.ca, ssl_certfile=tls.cert, ssl_keyfile=tls.key,
                       ssl_min_version=ssl.TLSVersion.TLSv1_2)
    elif tls.enabled:
        raise TlsConfigError(f"Redis TLS files are set but the URL is not rediss:// "
                             f"({url.split('@')[-1]})")
    pool = aioredis.ConnectionPool.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=2,
        health_check_interval=10, **options)
    if pool.connection_class is aioredis.Connection:  # not unix:// or rediss://
        pool.connection_class = TimedWriteConnection
    elif pool.connection_class is aioredis.SSLConnection:
        pool.connection_class = CPackedSSLConnection
    return aioredis.Redis.from_pool(pool)


def open_configured_redis(settings: Settings) -> aioredis.Redis:
    """The client of ``settings``: its URL, ACL user and TLS files."""
    return open_redis(settings.redis_url, username=settings.redis_username,
                      password=settings.redis_password,
                      tls=TlsFiles(settings.redis_tls_ca, settings.redis_tls_cert,
                                   settings.redis_tls_key))
