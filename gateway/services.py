"""What the gateway's handlers need, opened in the app's lifespan and closed on shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from core import bus
from core.config import Settings
from core.dependencies import DependencyMonitor, connected
from core.tenants import TenantDirectory
from gateway.admission import Admission
from gateway.artifact import Artifacts
from gateway.dryrun import DryRun
from gateway.filejobs import FileJobs
from gateway.files import FileService
from gateway.inputs import InputStore
from gateway.jobend import JobEnder
from gateway.load import LoadView
from gateway.queue import QueueView
from gateway.reads import JobReader
from gateway.retry import Retries
from gateway.submit import Submitter
from gateway.sweeper import Sweeper
from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.subscribe import Subscriptions
from gateway.webhooks.targets import TargetPolicy
from models.repository import ModelRepository
from store.endschedule import EndSchedule
from store.filepublish import FilePublishQueue
from store.jobstate import JobStateCache
from store.objects import ObjectBucket
from store.ratelimit import RateLimiter
from store.redis_client import open_configured_redis
from store.redis_errors import check_noeviction
from store.redis_pipe import open_configured_reads
from store.results import open_result_store
from store.results.base import ResultStore
from store.runners import RunnerRegistry
from store.webhooks import WebhookStore

log = logging.getLogger("inferq.gateway")


@dataclass
class GatewayServices:
    """Everything the handlers and the sweeper share, wired once per app."""

    settings: Settings
    tenants: TenantDirectory
    repo: ModelRepository
    nc: NATS
    redis: aioredis.Redis
    store: ResultStore
    cache: JobStateCache
    load: LoadView
    admission: Admission
    ender: JobEnder
    submitter: Submitter
    reader: JobReader
    sweeper: Sweeper
    webhooks: WebhookStore
    files: FileService | None = None
    filejobs: FileJobs | None = None
    artifacts: Artifacts | None = None
    dry_run: DryRun | None = None
    retries: Retries | None = None

    @classmethod
    async def open(cls, settings: Settings) -> GatewayServices:
        """Connect Redis (refusing an evicting one), the result store and NATS, provision the
        streams, then wire the parts."""
        tenants = TenantDirectory.load(settings.tenants_file, settings.api_key_pepper)
        if not len(tenants):
            log.warning("no tenants configured (INFERQ_TENANTS_FILE): every request is a 401")
        repo = ModelRepository(settings.model_repo)
        redis = open_configured_redis(settings)
        await check_noeviction(redis)
        store = open_result_store(settings.results_url)
        nc = await bus.connect_role(settings, "gateway")
        await bus.provision_streams(nc.jetstream(), replicas=settings.stream_replicas,
                                    dlq_max_age_s=settings.result_ttl_s)
        return cls.assemble(settings, tenants, repo, nc, redis, store)

    @classmethod
    def assemble(cls, settings: Settings, tenants: TenantDirectory, repo: ModelRepository,
                 nc: NATS, redis: aioredis.Redis, store: ResultStore) -> GatewayServices:
        """Wire the parts over open connections."""
        cache = JobStateCache(redis, reads=open_configured_reads(settings))
        load = LoadView(cache, RunnerRegistry(redis), repo, max_hint_s=settings.max_poll_hint_s)
        admission = Admission(settings, RateLimiter(redis), load)
        schedule = EndSchedule(redis)
        ender = JobEnder(store, cache, schedule, lease_s=settings.job_end_lease_s,
                         settle_s=settings.job_end_settle_s)
        webhooks = WebhookStore(redis)
        policy = TargetPolicy.parse(settings.webhook_allow_http,
                                    settings.webhook_allowed_networks)
        dispatcher = WebhookDispatcher(settings, webhooks, cache, store, tenants, policy)
        publishing = FilePublishQueue(redis)
        files = FileService(settings, ObjectBucket(
            nc, settings.files_bucket, ttl_s=2 * settings.result_ttl_s,
            replicas=settings.stream_replicas), publishing)
        inputs = InputStore(files, enabled=settings.keep_inputs)  # for retries
        submitter = Submitter(settings, repo, store, cache, nc, admission, schedule,
                              subscriptions=Subscriptions(policy, webhooks), inputs=inputs)
        filejobs = FileJobs(settings, files, submitter, store, cache, nc, admission, schedule,
                            publishing, inputs=inputs)
        queue = QueueView(cache, load, tenants,
                          interactive_multiplier=settings.interactive_multiplier)
        dependencies = DependencyMonitor("gateway", {  # inferq_dependency_up
            "nats": connected(nc), "redis": redis.ping, "store": store.ping},
            settings.dependency_check_s)
        sweeper = Sweeper(settings, store, cache, ender, load,
                          loops=[dispatcher, filejobs, dependencies],
                          still_publishing=filejobs.pending, queue=queue)
        reader = JobReader(store, cache, queue, inputs)
        return cls(settings, tenants, repo, nc, redis, store, cache, load, admission, ender,
                   submitter, reader, sweeper, webhooks, files=files,
                   filejobs=filejobs, artifacts=Artifacts(reader, redis),
                   dry_run=DryRun(settings, repo, submitter, admission, load, files),
                   retries=Retries(settings, reader, inputs, filejobs, submitter, admission))

    async def close(self) -> None:
        """Close NATS, Redis and the store; a failure to close one is logged, not raised."""
        for closer in (self.nc.close, self.cache.close_reads, self.redis.aclose,
                       self.store.close):
            try:
                await closer()
            except Exception:
                log.warning("error while closing", exc_info=True)
