"""How loaded each model is: its backlog and how fast its runners drain it, sampled in the
background so that poll hints and Retry-After values cost no round trip per request."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from models.repository import ModelRepository
from schemas.states import TERMINAL_JOB, JobStatus, Priority
from store.jobstate import JobStateCache, JobStatusSnapshot
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.gateway.load")


@dataclass(frozen=True)
class ModelLoad:
    """One model's sampled load."""

    backlog: int = 0
    """Items queued or running for the model (every tenant and priority)."""
    interactive: int = 0
    """Of ``backlog``, the items at ``interactive`` priority (served before batch work)."""
    throughput: float | None = None
    """Items per second its live runners finish (measured capacity x runners); None: unknown."""
    token_rate: float | None = None
    """Padded tokens per second of its live runners together (each pool's slowest runner x
    its runners); None: unknown."""


class LoadView:
    """The latest sample per model; ``refresh`` is called by the gateway's sweeper."""

    def __init__(self, cache: JobStateCache, registry: RunnerRegistry, repo: ModelRepository,
                 *, max_hint_s: float = 30.0):
        self._cache = cache
        self._registry = registry
        self._repo = repo
        self._max_hint = max_hint_s
        self._models: dict[str, ModelLoad] = {}

    def get(self, model: str) -> ModelLoad:
        """The model's latest sample (empty before the first refresh)."""
        return self._models.get(model, ModelLoad())

    async def refresh(self) -> None:
        """Sample every model's backlog and its live runners' measured throughput."""
        backlog = await self._cache.backlog()
        per_model: dict[str, int] = {}
        interactive: dict[str, int] = {}
        for (model, priority), n in backlog.models.items():
            per_model[model] = per_model.get(model, 0) + n
            if priority == Priority.INTERACTIVE:
                interactive[model] = interactive.get(model, 0) + n
        known = self._repo.models()
        sample: dict[str, ModelLoad] = {}
        for model in set(per_model) | set(known):
            rate = tokens = 0.0
            for version in known.get(model, []):
                pool = await self._registry.pool(model, version)
                if pool.capacity:
                    rate += pool.capacity * pool.count
                if pool.token_rate:
                    tokens += pool.token_rate * pool.count
            sample[model] = ModelLoad(per_model.get(model, 0), interactive.get(model, 0),
                                      rate or None, tokens or None)
        self._models = sample

    async def models_without_runner(self) -> list[str]:
        """``name@version`` of each model's newest version that no live runner serves."""
        missing = []
        for model, versions in sorted(self._repo.models().items()):
            if versions and not await self._registry.count(model, versions[-1]):
                missing.append(f"{model}@{versions[-1]}")
        return missing

    def drain_s(self, model: str, items: int) -> float | None:
        """Seconds the model's runners need for ``items`` items at the measured rate."""
        rate = self.get(model).throughput
        return max(0, items) / rate if rate else None

    def poll_hint(self, snap: JobStatusSnapshot) -> int | None:
        """Seconds until polling again is worth it: None for a terminal job; else the expected
        wait (the backlog ahead of a queued job plus the job's own remaining items, at the
        measured drain rate), clamped to 1..max. Without a measured rate: by job size. Ahead
        of an interactive job is only interactive work: batch work does not delay it."""
        if snap.status in TERMINAL_JOB:
            return None
        remaining = snap.total - snap.succeeded - snap.failed
        ahead = 0
        if snap.status == JobStatus.QUEUED:
            load = self.get(snap.model)
            queued = load.interactive if snap.priority == Priority.INTERACTIVE else load.backlog
            ahead = max(0, queued - remaining)
        wait = self.drain_s(snap.model, ahead + remaining)
        if wait is None:
            wait = 1.0 if remaining <= 100 else 2.0 if remaining <= 2_000 else 5.0
        return int(min(self._max_hint, max(1, math.ceil(wait))))
