"""The scheduler role: NATS and Redis connections around ``scheduler.service.Scheduler``."""

from __future__ import annotations

import os

from core import bus
from core.config import Settings
from core.tenants import TenantDirectory
from inferq.roles.connections import close_nats
from scheduler.service import Scheduler
from store.redis_client import open_redis


class SchedulerRole:
    """One scheduler replica with its own connections; weights from the tenants file."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.scheduler: Scheduler | None = None

    async def start(self) -> None:
        """Connect, make sure the streams exist, start forming batches."""
        s = self.settings
        # Tokenize on one core (a worker thread, GIL released) unless told the cores are
        # ours: fanning out would stall a CPU runner beside it. The tokenizers library reads
        # this variable at each call; an operator's own setting wins.
        os.environ.setdefault("TOKENIZERS_PARALLELISM",
                              "true" if s.tokenizer_parallel else "false")
        self._nc = await bus.connect(s.nats_url, "inferq-scheduler")
        await bus.provision_streams(self._nc.jetstream(), replicas=s.stream_replicas,
                                    dlq_max_age_s=s.result_ttl_s)
        self._redis = open_redis(s.redis_url)
        tenants = TenantDirectory.load(s.tenants_file)
        weights = tenants.weights()
        self.scheduler = Scheduler(s, self._nc, self._redis, lambda t: weights.get(t, 1.0))
        await self.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler (unformed items are nak'ed), then close connections. Idempotent."""
        sched, self.scheduler = self.scheduler, None
        if sched is None:
            return
        await sched.stop()
        await close_nats(self._nc)
        await self._redis.aclose()
