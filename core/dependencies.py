"""Which dependency a role cannot reach, as a gauge: ``inferq_dependency_up{role,dependency}``.

Each role runs one ``DependencyMonitor`` with a check per dependency it uses (NATS: the
client's connection state, free; Redis: a PING; the result store: its trivial query), every
``dependency_check_s``, each bounded by that interval: a check that fails or does not answer in
time sets 0. The scheduler also reads the NATS servers' JetStream sync setting from their
monitoring endpoint (``JetStreamSync``), which no client connection can read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence

from core import metrics
from core.tasks import stop_task

log = logging.getLogger("inferq.dependencies")

Check = Callable[[], Awaitable[object]]
"""Raises (or returns False) when the dependency is down."""


class DependencyMonitor:
    """A loop with ``start()`` and an idempotent ``stop()``: checks every dependency each
    ``every_s`` and sets its gauge; ``also`` are other cheap reads done on the same tick."""

    def __init__(self, role: str, checks: Mapping[str, Check], every_s: float, *,
                 also: Sequence[Callable[[], Awaitable[None]]] = ()):
        self._role = role
        self._checks = dict(checks)
        self._every = every_s
        self._also = list(also)
        self._task: asyncio.Task | None = None
        self.up: dict[str, bool] = {}
        """The last result per dependency (tests, diagnostics)."""

    def start(self) -> None:
        """Check now, then every ``every_s``, until ``stop()``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self._role}-dependencies")

    async def stop(self) -> None:
        """Stop checking (the gauges keep their last values). Idempotent."""
        task, self._task = self._task, None
        await stop_task(task, 0)

    async def check_once(self) -> dict[str, bool]:
        """Run every check (concurrently) and the ``also`` reads; set and return the results."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._check(self._checks[n]) for n in names))
        for name, ok in zip(names, results, strict=True):
            if self.up.get(name, True) and not ok:
                log.warning("%s: %s unreachable", self._role, name)
            elif ok and self.up.get(name) is False:
                log.info("%s: %s reachable again", self._role, name)
            self.up[name] = ok
            metrics.DEPENDENCY_UP.labels(self._role, name).set(1 if ok else 0)
        for read in self._also:
            try:
                await asyncio.wait_for(read(), self._every)
            except Exception:  # a diagnostic read must not stop the checks
                log.debug("periodic read failed", exc_info=True)
        return dict(self.up)

    async def _check(self, check: Check) -> bool:
        try:
            return await asyncio.wait_for(check(), self._every) is not False
        except Exception:  # noqa: BLE001 - any failure means down
            return False

    async def _run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._every)


def connected(nc) -> Check:
    """The NATS check: the client's own connection state (no round trip)."""

    async def check() -> bool:
        return bool(nc.is_connected)

    return check


class JetStreamSync:
    """Reads each NATS server's ``/varz`` (``jetstream.config``) and exports whether it fsyncs
    every write (``inferq_jetstream_sync_always``) and its periodic interval, per server. A
    server that does not answer keeps its last values (its outage is ``dependency_up``'s)."""

    def __init__(self, monitor_urls: str, timeout_s: float = 2.0):
        self.urls = [u.strip().rstrip("/") for u in monitor_urls.split(",") if u.strip()]
        self._timeout = timeout_s

    async def read(self) -> None:
        """Read every server once (in worker threads: plain HTTP, once per interval)."""
        got = await asyncio.gather(*(asyncio.to_thread(self._read_one, u) for u in self.urls),
                                   return_exceptions=True)
        for url, result in zip(self.urls, got, strict=True):
            if isinstance(result, Exception):
                log.debug("reading %s/varz failed: %s", url, result)

    def _read_one(self, url: str) -> None:
        with urllib.request.urlopen(f"{url}/varz", timeout=self._timeout) as r:
            varz = json.load(r)
        config = (varz.get("jetstream") or {}).get("config") or {}
        server = varz.get("server_name") or url
        metrics.JETSTREAM_SYNC_ALWAYS.labels(server).set(1 if config.get("sync_always") else 0)
        if "sync_interval" in config:  # nanoseconds (Go's time.Duration)
            metrics.JETSTREAM_SYNC_INTERVAL.labels(server).set(config["sync_interval"] / 1e9)
