"""What the gateway's handlers need, opened in the app's lifespan and closed on shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from gateway.reads import JobReader
from gateway.submit import Submitter
from gateway.tenants import TenantDirectory
from inferq import bus
from inferq.config import Settings
from inferq.models.repository import ModelRepository
from store.jobstate import JobStateCache
from store.redis_errors import check_noeviction
from store.results import open_result_store
from store.results.base import ResultStore

log = logging.getLogger("inferq.gateway")


@dataclass
class GatewayServices:
    settings: Settings
    tenants: TenantDirectory
    repo: ModelRepository
    nc: NATS
    redis: aioredis.Redis
    store: ResultStore
    cache: JobStateCache
    submitter: Submitter
    reader: JobReader

    @classmethod
    async def open(cls, settings: Settings) -> GatewayServices:
        tenants = TenantDirectory.load(settings.tenants_file)
        if not len(tenants):
            log.warning("no tenants configured (INFERQ_TENANTS_FILE): every request is a 401")
        repo = ModelRepository(settings.model_repo)
        redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                        socket_connect_timeout=2, health_check_interval=10)
        await check_noeviction(redis)
        store = open_result_store(settings.results_url)
        nc = await bus.connect(settings.nats_url, "inferq-gateway")
        js = nc.jetstream()
        await bus.provision_streams(js, replicas=settings.stream_replicas,
                                    dlq_max_age_s=settings.result_ttl_s)
        cache = JobStateCache(redis)
        return cls(settings, tenants, repo, nc, redis, store, cache,
                   Submitter(settings, repo, store, cache, js), JobReader(store, cache))

    async def close(self) -> None:
        for closer in (self.nc.close, self.redis.aclose, self.store.close):
            try:
                await closer()
            except Exception:
                log.warning("error while closing", exc_info=True)
