"""``GET /v1/usage``: a tenant's usage over UTC days, grouped by day or by model."""

from __future__ import annotations

import enum

import msgspec


class UsageGroup(enum.StrEnum):
    """How ``data`` is grouped: one row per UTC day of the range, or one per model used."""

    DAY = "day"
    MODEL = "model"


class Outcomes(msgspec.Struct, frozen=True):
    """Counts by terminal status."""

    succeeded: int = 0
    failed: int = 0


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    """What was counted: jobs by how they ended (a cancelled or timed-out job is failed),
    items by status, and the input tokens and inference time of the items that succeeded."""

    jobs: Outcomes
    items: Outcomes
    input_tokens: int
    inference_seconds: float
    """Device time attributed to the items by their padded tokens (their share of their
    batch's)."""


class UsageRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One group, named by ``day`` (``YYYY-MM-DD``) when grouped by day, by ``model`` when by
    model; its counts as in :class:`UsageTotals`."""

    day: str | None = None
    model: str | None = None
    jobs: Outcomes
    items: Outcomes
    input_tokens: int
    inference_seconds: float


class UsageReport(msgspec.Struct, frozen=True):
    """The calling tenant's usage from ``start`` to ``end`` (UTC days, both included)."""

    tenant: str
    start: str
    end: str
    group_by: UsageGroup
    data: list[UsageRow]
    totals: UsageTotals
