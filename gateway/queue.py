"""Queue position and estimated completion of live jobs, from a sample of the live jobs
taken in the background (every ``load_refresh_s``), so a status read stays one HMGET.

How they are computed (README "Queue position and ETA"):

- Within a lane (model, priority, tenant) chunks are served in order, so the items of the
  tenant's *earlier* live jobs in the lane that have not started (``own``) come first.
- Across tenants the scheduler shares a model by weighted deficit round-robin: while the
  tenant is served ``n`` items, another tenant ``j`` is served about ``n * w_j / w`` items
  (at most the ``P_j`` items it has waiting). Interactive lanes weigh
  ``interactive_multiplier`` times more than batch lanes.
- ``queue_position`` = ``own + Σ_j min(P_j, (own + 1) * w_j / w)`` over the other tenants of
  the same model and priority: items ahead of the job's next pending item (0 once none is
  pending).
- ``estimated_completion_at`` = now + the items served until the job's last item (``own`` +
  the job's own remaining items, every other lane of the model by the same share, and the
  items running now) / the model's measured throughput (runners' items/s). None without a
  measured throughput.

Jobs submitted since the last sample count as the newest in their lane. Bounded: at most
``MAX_LIVE`` live jobs are sampled (the oldest).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import msgspec

from core.tenants import TenantDirectory
from gateway.load import LoadView
from schemas.states import TERMINAL_JOB, Priority
from store.jobstate import JobStateCache, JobStatusSnapshot

MAX_LIVE = 20_000


@dataclass
class _Tenant:
    """One tenant's live jobs in one lane: creation order, and pending items up to each."""

    keys: list[tuple[float, str]] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def before(self, key: tuple[float, str]) -> int:
        """Pending items of this tenant's jobs created before ``key``."""
        i = bisect.bisect_left(self.keys, key)
        return self.cumulative[i - 1] if i else 0


@dataclass(frozen=True)
class _Sample:
    lanes: dict[tuple[str, str], dict[str, _Tenant]]
    running: dict[str, int]
    """Items running now per model."""


class QueueView:
    """The latest sample of the live jobs; ``annotate`` adds the estimates to a snapshot."""

    def __init__(self, cache: JobStateCache, load: LoadView, tenants: TenantDirectory,
                 *, interactive_multiplier: float = 4.0):
        self._cache = cache
        self._load = load
        self._weights = tenants.weights()
        self._mult = interactive_multiplier
        self._sample: _Sample | None = None

    async def refresh(self) -> None:
        """Sample the live jobs (the sweeper calls it every ``load_refresh_s``)."""
        lanes: dict[tuple[str, str], dict[str, _Tenant]] = {}
        running: dict[str, int] = {}
        snaps = await self._cache.live_snapshots(MAX_LIVE)
        for s in sorted(snaps, key=lambda s: (s.created_at, s.job_id)):
            if s.status in TERMINAL_JOB:
                continue
            t = lanes.setdefault((s.model, s.priority), {}).setdefault(s.tenant, _Tenant())
            t.keys.append((s.created_at, s.job_id))
            t.cumulative.append(t.pending + max(0, s.pending))
            running[s.model] = running.get(s.model, 0) + s.running
        self._sample = _Sample(lanes, running)

    def _weight(self, tenant: str, priority: str) -> float:
        w = self._weights.get(tenant, 1.0)
        return w * self._mult if priority == Priority.INTERACTIVE else w

    def annotate(self, snap: JobStatusSnapshot, now: float | None = None) -> JobStatusSnapshot:
        """The snapshot with ``queue_position`` and ``estimated_completion_at`` (both None
        for a terminal job or before the first sample)."""
        sample = self._sample
        if sample is None or snap.status in TERMINAL_JOB:
            return snap
        key = (snap.created_at, snap.job_id)
        lane = sample.lanes.get((snap.model, snap.priority), {})
        mine = lane.get(snap.tenant)
        own = mine.before(key) if mine is not None else 0
        w = self._weight(snap.tenant, snap.priority)
        pending = max(0, snap.pending)

        def others(n: float, same_lane_only: bool) -> float:
            total = 0.0
            for (model, priority), tenants in sample.lanes.items():
                if model != snap.model or (same_lane_only and priority != snap.priority):
                    continue
                for name, t in tenants.items():
                    if priority == snap.priority and name == snap.tenant:
                        continue
                    total += min(t.pending, n * self._weight(name, priority) / w)
            return total

        position = 0 if pending == 0 else int(own + others(own + 1, True))
        through = own + pending
        remaining = snap.total - snap.succeeded - snap.failed
        drain = own + remaining + others(through, False) + sample.running.get(snap.model, 0) \
            - snap.running  # this job's running items are in ``remaining`` already
        wait = self._load.drain_s(snap.model, int(drain))
        now = time.time() if now is None else now
        return msgspec.structs.replace(
            snap, queue_position=position,
            estimated_completion_at=None if wait is None else now + wait)
