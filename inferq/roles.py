"""Each role as an object with ``start()`` and an idempotent ``stop()``, opening and closing its
own connections. The command line wraps these with signal handling; tests drive them directly.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import redis.asyncio as aioredis
import uvicorn

from gateway.app import create_app
from gateway.tenants import TenantDirectory
from gpu_runner.backends import create_backend
from gpu_runner.service import Runner
from inferq import bus
from inferq.config import Settings
from inferq.models.repository import ModelRepository
from scheduler.runners import RunnerRegistry
from scheduler.service import Scheduler
from store.jobstate import JobStateCache
from store.redis_errors import check_noeviction
from store.results import open_result_store

log = logging.getLogger("inferq.roles")


def _redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=10)


async def _close_nats(nc) -> None:
    """Flush what we published, then close. (``drain`` would wait out its timeout on
    subscriptions with a pull request in flight; every ack we owe was sent synchronously.)"""
    if nc.is_connected:
        try:
            await nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
    try:
        await nc.close()
    except OSError:  # the server went away first: there is nothing left to close
        pass


class GatewayRole:
    """uvicorn serving the Litestar app on the configured host and port."""

    def __init__(self, settings: Settings, sock: socket.socket | None = None):
        self.settings = settings
        self._sock = sock
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        app = create_app(self.settings)
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port,
                                log_level="warning", lifespan="on", access_log=False)
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
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            await task


class SchedulerRole:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.scheduler: Scheduler | None = None

    async def start(self) -> None:
        s = self.settings
        self._nc = await bus.connect(s.nats_url, "inferq-scheduler")
        await bus.provision_streams(self._nc.jetstream(), replicas=s.stream_replicas,
                                    dlq_max_age_s=s.result_ttl_s)
        self._redis = _redis(s)
        tenants = TenantDirectory.load(s.tenants_file)
        weights = tenants.weights()
        self.scheduler = Scheduler(s, self._nc, self._redis, lambda t: weights.get(t, 1.0))
        await self.scheduler.start()

    async def stop(self) -> None:
        sched, self.scheduler = self.scheduler, None
        if sched is None:
            return
        await sched.stop()
        await _close_nats(self._nc)
        await self._redis.aclose()


class RunnerRole:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.runner: Runner | None = None

    async def start(self) -> None:
        s = self.settings
        repo = ModelRepository(s.model_repo)
        name, version = repo.resolve(s.runner_model)
        backend = create_backend(s.backend, repo.version_dir(name, version),
                                 repo.config(name, version), threads=s.backend_threads,
                                 streams=s.backend_streams)
        await asyncio.to_thread(backend.warmup)
        self._backend = backend
        self._redis = _redis(s)
        await check_noeviction(self._redis)
        self._store = open_result_store(s.results_url)
        self._nc = await bus.connect(s.nats_url, "inferq-runner")
        await bus.provision_streams(self._nc.jetstream(), replicas=s.stream_replicas,
                                    dlq_max_age_s=s.result_ttl_s)
        self.runner = Runner(s, self._nc, self._store, JobStateCache(self._redis),
                             RunnerRegistry(self._redis), backend, name, version, self._redis)
        await self.runner.start()
        log.info("runner %s serving %s@%d on %s (%s)", self.runner.runner_id, name, version,
                 backend.name, backend.precision)

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is None:
            return
        await runner.stop()
        await _close_nats(self._nc)
        await self._redis.aclose()
        await self._store.close()
        self._backend.close()
