"""The scheduler role: NATS and Redis connections around ``scheduler.service.Scheduler``."""

from __future__ import annotations

import os

from core import bus, metrics, otel
from core.config import Settings
from core.dependencies import DependencyMonitor, JetStreamSync, connected
from core.tenants import TenantDirectory
from inferq.roles.connections import close_nats
from scheduler.service import Scheduler
from store.redis_client import open_configured_redis


class SchedulerRole:
    """One scheduler replica with its own connections; weights from the tenants file."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.scheduler: Scheduler | None = None

    async def start(self) -> None:
        """Connect, make sure the streams exist, start forming batches."""
        s = self.settings
        self._otel = otel.install(s)  # spans exported only with otlp_endpoint
        # Tokenize on one core (a worker thread, GIL released) unless told the cores are
        # ours: fanning out would stall a CPU runner beside it. The tokenizers library reads
        # this variable at each call; an operator's own setting wins.
        os.environ.setdefault("TOKENIZERS_PARALLELISM",
                              "true" if s.tokenizer_parallel else "false")
        self._nc = await bus.connect_role(s, "scheduler")
        await bus.provision_streams(self._nc.jetstream(), replicas=s.stream_replicas,
                                    dlq_max_age_s=s.result_ttl_s)
        self._redis = open_configured_redis(s)
        tenants = TenantDirectory.load(s.tenants_file)
        weights = tenants.weights()
        for tenant, weight in weights.items():
            metrics.TENANT_WEIGHT.labels(tenant).set(weight)
        self.scheduler = Scheduler(s, self._nc, self._redis, lambda t: weights.get(t, 1.0))
        await self.scheduler.start()
        sync = JetStreamSync(s.nats_monitor_url)
        self.dependencies = DependencyMonitor(
            "scheduler", {"nats": connected(self._nc), "redis": self._redis.ping},
            s.dependency_check_s, also=[sync.read] if sync.urls else [])
        self.dependencies.start()

    async def stop(self) -> None:
        """Stop the scheduler (unformed items are nak'ed), then close connections. Idempotent."""
        sched, self.scheduler = self.scheduler, None
        if sched is None:
            return
        await self.dependencies.stop()
        await sched.stop()
        await close_nats(self._nc)
        await self._redis.aclose()
        if self._otel:
            await otel.release()
