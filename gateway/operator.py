"""The operator's overview: queue depth and oldest age per model and priority, runner busy
ratios, dead letters, and each tenant's share of recent throughput against its weight.

Everything comes from state the service keeps already: the Redis backlog counters, the live
jobs, the runners' heartbeats, and the JOBS and DLQ streams. The one figure with history,
throughput per tenant, has no counter of its own: :class:`ThroughputWindow` derives it from
successive samples of the live jobs, taken while someone reads the overview (so an unwatched
gateway pays nothing). A job that starts and ends between two samples is not seen — the
page says so. Behind a separate operator key (``operator_api_key_hmac``); a tenant key is a
403.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from nats.aio.client import Client as NATS
from nats.js import errors as jserr

from core.tenants import TenantDirectory, hmac_key
from gateway import errors as E
from gateway.routes import get_and_head, options_handlers, problems, services
from gateway.services import GatewayServices
from models.repository import ModelRepository
from schemas import subjects
from schemas.api import Problem
from schemas.bus import CHUNK_DECODER
from schemas.errors import ErrorCode
from schemas.operator import (
    DeadLetters,
    OperatorOverview,
    QueueLane,
    RunnerInfo,
    TenantShare,
)
from store.jobstate import JobStateCache
from store.runners import RunnerRegistry

MAX_LANES = 512
"""Most lanes whose oldest chunk one overview reads (one JetStream call each)."""
MAX_LIVE = 20_000
"""Most live jobs one sample reads (the oldest), as the queue view does."""
WINDOW_S = 60.0
MIN_SAMPLE_S = 1.0
"""Overviews asked for within this of the last one get the same document: bounds what any
number of open pages cost."""


class Forbidden(E.ApiError):
    """403: a valid key that is not an operator key (a tenant's)."""

    status_code, code, title = 403, ErrorCode.FORBIDDEN, "Not an operator key"


class ThroughputWindow:
    """Items finished per tenant over the last ``window_s``, from successive samples of each
    live job's finished count (succeeded + failed). Plain and synchronous.

    A job seen in the previous sample contributes what it finished since; a job new since
    then contributes all it finished (it was created after the previous sample, or it was
    past the sample's bound); a job gone from the live set is passed in once more with its
    final count by the caller (:meth:`vanished` names them). The first sample is a baseline.
    """

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._last: dict[str, tuple[str, int]] = {}
        self._events: deque[tuple[float, dict[str, int]]] = deque()
        self._since: float | None = None

    def vanished(self, live: Iterable[str]) -> list[str]:
        """Jobs of the previous sample missing from ``live`` (ended since, or expired)."""
        return sorted(set(self._last) - set(live))

    def observe(self, now: float, live: Iterable[tuple[str, str, int]],
                ended: Iterable[tuple[str, str, int]] = ()) -> None:
        """Absorb a sample: ``live`` and ``ended`` are ``(job_id, tenant, finished)``."""
        first = self._since is None
        done: dict[str, int] = {}
        current = {job_id: (tenant, n) for job_id, tenant, n in live}
        seen = [(j, t, n) for j, (t, n) in current.items()]
        for job_id, tenant, n in [*seen, *ended]:
            before = self._last.get(job_id)
            delta = n - before[1] if before is not None else n
            if not first and delta > 0:
                done[tenant] = done.get(tenant, 0) + delta
        self._last = current
        if first:
            self._since = now
        elif done:
            self._events.append((now, done))
        while self._events and self._events[0][0] < now - self.window_s:
            self._events.popleft()

    def covered_s(self, now: float) -> float:
        """Seconds the current figures cover (0 before a second sample)."""
        if self._since is None:
            return 0.0
        return max(0.0, min(self.window_s, now - self._since))

    def finished(self) -> dict[str, int]:
        """Items finished per tenant within the window."""
        out: dict[str, int] = {}
        for _, done in self._events:
            for tenant, n in done.items():
                out[tenant] = out.get(tenant, 0) + n
        return out


class OperatorView:
    """Builds the overview from the service's existing state; at most one build per
    ``MIN_SAMPLE_S``, however many pages ask."""

    def __init__(self, cache: JobStateCache, registry: RunnerRegistry, repo: ModelRepository,
                 tenants: TenantDirectory, nc: NATS):
        self._cache = cache
        self._registry = registry
        self._repo = repo
        self._tenants = tenants
        self._nc = nc
        self._window = ThroughputWindow()
        self._lock = asyncio.Lock()
        self._latest: tuple[float, OperatorOverview] | None = None

    @classmethod
    def of(cls, svc: GatewayServices) -> OperatorView:
        return cls(svc.cache, RunnerRegistry(svc.redis), svc.repo, svc.tenants, svc.nc)

    async def overview(self) -> OperatorOverview:
        """The latest overview, rebuilt if older than ``MIN_SAMPLE_S``."""
        async with self._lock:
            now = time.monotonic()
            if self._latest is None or now - self._latest[0] >= MIN_SAMPLE_S:
                self._latest = (now, await self._build(time.time()))
            return self._latest[1]

    async def _build(self, now: float) -> OperatorOverview:
        backlog = await self._cache.backlog()
        await self._sample(now)
        oldest = await self._oldest_ages(now)
        queues = [QueueLane(m, p, n, oldest.get((m, p)))
                  for (m, p), n in sorted(backlog.models.items())]
        for (m, p), age in sorted(oldest.items()):  # a chunk whose counter is already 0
            if (m, p) not in backlog.models:
                queues.append(QueueLane(m, p, 0, age))
        runners = []
        for model, versions in sorted(self._repo.models().items()):
            for version in versions:
                for r in await self._registry.members(model, version):
                    runners.append(RunnerInfo(model, version, r.runner_id, r.busy_ratio,
                                              r.capacity, round(r.heartbeat_age_s, 1)))
        dead, by_model = await self._dead_letters()
        return OperatorOverview(
            generated_at=datetime.fromtimestamp(now, tz=UTC).isoformat(
                timespec="seconds").replace("+00:00", "Z"),
            queues=queues, runners=runners, dead_letters=dead,
            dead_letters_by_model=by_model, tenants=self._shares(backlog.tenants, now),
            throughput_window_s=round(self._window.covered_s(now), 1), notes=NOTES)

    async def _sample(self, now: float) -> None:
        snaps = await self._cache.live_snapshots(MAX_LIVE)
        live = [(s.job_id, s.tenant, s.succeeded + s.failed) for s in snaps]
        ended = []
        for job_id in self._window.vanished(j for j, _, _ in live):
            snap = await self._cache.get_status(job_id)
            if snap is not None:
                ended.append((job_id, snap.tenant, snap.succeeded + snap.failed))
        self._window.observe(now, live, ended)

    def _shares(self, backlog: dict[str, int], now: float) -> list[TenantShare]:
        finished = self._window.finished()
        weights = self._tenants.weights()
        active = {t for t, n in backlog.items() if n > 0} | {t for t, n in finished.items() if n}
        active_weight = sum(weights.get(t, 1.0) for t in active)
        total = sum(finished.values())
        measured = self._window.covered_s(now) > 0
        out = []
        for tenant in sorted(set(weights) | set(backlog) | set(finished)):
            w = weights.get(tenant, 1.0)
            out.append(TenantShare(
                tenant=tenant, weight=w,
                weight_share=round(w / active_weight, 4) if tenant in active else None,
                backlog=backlog.get(tenant, 0), items_finished=finished.get(tenant, 0),
                throughput_share=(round(finished.get(tenant, 0) / total, 4)
                                  if measured and total else None)))
        return out

    async def _oldest_ages(self, now: float) -> dict[tuple[str, str], float]:
        """Age of the oldest chunk in JOBS per (model, priority): the first message of each
        lane's subject, as the scheduler's observer reads it."""
        js = self._nc.jetstream()
        info = await js.stream_info(subjects.JOBS_STREAM,
                                    subjects_filter=subjects.jobs_filter("*", "*", "*"))
        lanes = [s for s, n in (info.state.subjects or {}).items() if n > 0][:MAX_LANES]
        out: dict[tuple[str, str], float] = {}
        jsm = self._nc.jsm()
        for subject in lanes:
            try:
                model, priority, _ = subjects.parse_job_subject(subject)
                raw = await jsm.get_msg(subjects.JOBS_STREAM, seq=1, subject=subject,
                                        next=True)
            except (ValueError, jserr.NotFoundError):
                continue
            age = max(0.0, now - CHUNK_DECODER.decode(raw.data).created_at)
            out[(model, priority)] = round(max(out.get((model, priority), 0.0), age), 1)
        return out

    async def _dead_letters(self) -> tuple[int, list[DeadLetters]]:
        js = self._nc.jetstream()
        info = await js.stream_info(subjects.DLQ_STREAM,
                                    subjects_filter=f"{subjects.DLQ_PREFIX}.>")
        by_model = []
        for subject, n in sorted((info.state.subjects or {}).items()):
            parts = subject.split(".")
            if len(parts) == 4 and parts[3].isdigit():
                by_model.append(DeadLetters(parts[2], int(parts[3]), n))
        return info.state.messages, by_model


NOTES = [
    "Queue depth counts items queued or running (the Redis backlog counters); oldest age is "
    "the oldest chunk still in JetStream for that model and priority.",
    "Throughput shares come from samples of the live jobs taken while this overview is read "
    "(at most one a second, kept for 60 s): a job that starts and ends between two reads is "
    "not counted, and the figures start empty when nobody has looked for a while. Exact "
    "counts over any window are in Prometheus: inferq_tenant_items_batched_total (the "
    "schedulers' count of each tenant's items sent to runners).",
    "Weight share is the tenant's weight over the weights of the tenants with work; fair "
    "share holds per model and priority (interactive lanes weigh interactive_multiplier times "
    "more), so compare within one model and priority.",
    "Busy ratio is each runner's own measure of wall time spent in inference, from its last "
    "heartbeat.",
]


def _operator_digests(svc: GatewayServices) -> list[str]:
    s = svc.settings
    return [d.strip().lower() for d in s.operator_api_key_hmac.split(",") if d.strip()]


async def operator_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: ``Authorization: Bearer <operator key>``. 401 without a key or with an unknown
    one; 403 with a tenant's key. Compared as an HMAC under the pepper, in constant time."""
    scheme, _, key = connection.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise E.Unauthenticated("send `Authorization: Bearer <operator key>`")
    svc: GatewayServices = connection.app.state.services
    pepper = svc.settings.api_key_pepper
    digest = hmac_key(key, pepper) if pepper else ""
    ok = False
    for d in _operator_digests(svc):
        ok |= bool(digest) and hmac.compare_digest(digest, d)
    if ok:
        return
    if svc.tenants.identify(key) is not None:
        raise Forbidden("a tenant key cannot read the operator overview")
    raise E.Unauthenticated("unknown operator key")  # never echo the key


def operator_view(request: Request) -> OperatorView:
    """The app's one OperatorView (its throughput window must outlive a request)."""
    state = request.app.state
    view = state.get("operator_view")
    if view is None:
        view = state["operator_view"] = OperatorView.of(services(request))
    return view


_FORBIDDEN = ResponseSpec(Problem, description="`forbidden`: a tenant's key, not an operator key",
                          media_type=E.PROBLEM_JSON, generate_examples=False)


@get_and_head("/v1/operator/overview",
              summary="Operator: queues, runners, dead letters, tenants' shares (operator key)",
              description="Needs `Authorization: Bearer <operator key>` (the setting "
                          "`operator_api_key_hmac`), not a tenant key: a tenant key is a 403. "
                          "Rebuilt at most once a second.",
              responses={**problems(401, 503), 403: _FORBIDDEN},
              guards=[operator_only], security=[{"bearer": []}])
async def get_operator_overview(request: Request) -> Response[OperatorOverview]:
    """The operator's overview document."""
    return Response(await operator_view(request).overview(),
                    headers={"Cache-Control": "no-store"})


_HANDLERS = [get_operator_overview]
OPERATOR_ROUTES = options_handlers(_HANDLERS) + _HANDLERS
