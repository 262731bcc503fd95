"""The runner role: a backend for one model version and ``gpu_runner.service.Runner``."""

from __future__ import annotations

import asyncio
import logging

from core import bus, otel
from core.config import Settings
from core.dependencies import DependencyMonitor, connected
from gpu_runner.backends import create_backend
from gpu_runner.service import Runner
from inferq.roles.connections import close_nats
from models.repository import ModelRepository
from store.jobstate import JobStateCache
from store.redis_client import open_configured_redis
from store.redis_errors import check_noeviction
from store.results import open_result_store
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.roles")


class RunnerRole:
    """One runner: loads and warms the backend before it takes any batch."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.runner: Runner | None = None

    async def start(self) -> None:
        """Load and warm the model, connect, start pulling batches."""
        s = self.settings
        self._otel = otel.install(s)  # spans exported only with otlp_endpoint
        repo = ModelRepository(s.model_repo)
        name, version = repo.resolve(s.runner_model)
        backend = create_backend(s.backend, repo.version_dir(name, version),
                                 repo.config(name, version), threads=s.backend_threads,
                                 streams=s.backend_streams, sim_batch_ms=s.sim_batch_ms,
                                 sim_token_us=s.sim_token_us)
        await asyncio.to_thread(backend.warmup)
        self._backend = backend
        self._redis = open_configured_redis(s)
        await check_noeviction(self._redis)
        self._store = open_result_store(s.results_url)
        self._nc = await bus.connect_role(s, "runner")
        await bus.provision_streams(self._nc.jetstream(), replicas=s.stream_replicas,
                                    dlq_max_age_s=s.result_ttl_s)
        self.runner = Runner(s, self._nc, self._store, JobStateCache(self._redis),
                             RunnerRegistry(self._redis), backend, name, version, self._redis)
        await self.runner.start()
        self.dependencies = DependencyMonitor("runner", {  # inferq_dependency_up
            "nats": connected(self._nc), "redis": self._redis.ping, "store": self._store.ping},
            s.dependency_check_s)
        self.dependencies.start()
        log.info("runner %s serving %s@%d on %s (%s)", self.runner.runner_id, name, version,
                 backend.name, backend.precision)

    async def stop(self) -> None:
        """Finish and ack the batch in hand, then close connections and the backend."""
        runner, self.runner = self.runner, None
        if runner is None:
            return
        await self.dependencies.stop()
        await runner.stop()
        await close_nats(self._nc)
        await self._redis.aclose()
        await self._store.close()
        self._backend.close()
        if self._otel:
            await otel.release()
