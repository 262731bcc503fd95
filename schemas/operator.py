"""``GET /v1/operator/overview``: what an operator looks at — queues, runners, dead letters
and each tenant's share of recent throughput against its weight (gateway/operator.py)."""

from __future__ import annotations

import msgspec


class QueueLane(msgspec.Struct, frozen=True):
    """One model and priority, all tenants together."""

    model: str
    priority: str
    depth: int
    """Items accepted and not yet terminal (queued or running): the Redis backlog counter,
    the same figure as ``inferq_queue_depth_items``."""
    oldest_age_s: float | None
    """Age of the oldest chunk still in JOBS for this model and priority (the scheduler's
    ``inferq_queue_oldest_age_seconds``); None when no chunk waits."""


class RunnerInfo(msgspec.Struct, frozen=True):
    """One live runner, as its last heartbeat reported it."""

    model: str
    version: int
    runner_id: str
    busy_ratio: float
    """Fraction of wall time spent in inference."""
    capacity_items_s: float | None
    """Items/s when fully busy; None until measured."""
    heartbeat_age_s: float


class DeadLetters(msgspec.Struct, frozen=True):
    """Batches dead-lettered for one model version (kept ``result_ttl_s``)."""

    model: str
    version: int
    count: int


class TenantShare(msgspec.Struct, frozen=True):
    """One tenant's backlog, weight and share of the items finished in the window."""

    tenant: str
    weight: float
    weight_share: float | None
    """The tenant's weight over the weights of the tenants with work (backlog or items
    finished in the window); None when it has none. What weighted fair share promises when
    every one of them has enough waiting, on one model at one priority."""
    backlog: int
    """Items accepted and not yet terminal."""
    items_finished: int
    """Items counted terminal in the window (sampled; see ``OperatorOverview.notes``)."""
    throughput_share: float | None
    """``items_finished`` over every tenant's in the window; None before two samples."""


class OperatorOverview(msgspec.Struct, frozen=True):
    """The operator view's one document."""

    generated_at: str
    queues: list[QueueLane]
    runners: list[RunnerInfo]
    dead_letters: int
    """Batches in the DLQ stream (every model)."""
    dead_letters_by_model: list[DeadLetters]
    tenants: list[TenantShare]
    throughput_window_s: float
    """Seconds of samples the shares cover (0 before a second sample)."""
    notes: list[str]
    """What a figure does not show or how it is approximated, in words for the page."""
