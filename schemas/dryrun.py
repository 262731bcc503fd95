"""``POST /v1/jobs?dry_run=true``: what the job would be, without making it."""

from __future__ import annotations

import msgspec

from schemas.errors import ItemError
from schemas.states import Priority

DRY_RUN_ITEMS_SHOWN = 100
"""Items reported one by one; totals cover every item."""


class DryRunItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item as the model would see it: its tokens ([CLS]/[SEP] included, after
    truncation), whether it was truncated, or why it would fail."""

    index: int
    tokens: int
    truncated: bool = False
    id: str | None = None
    error: ItemError | None = None


class DryRunReport(msgspec.Struct, frozen=True):
    """The request is valid (an invalid one is the same 400 a real submit gets); nothing was
    created. Estimates are null until the model's runners have measured their speed."""

    model: str
    model_version: int
    priority: Priority
    items: int
    items_valid: int
    """Items that would run; the others would fail (``empty_text``, ``invalid_text``)."""
    items_truncated: int
    tokens: int
    """Input tokens of the valid items, after truncation."""
    padded_tokens: int
    """What the accelerator pays for: each valid item padded to its length bucket."""
    max_seq_len: int
    first_items: list[DryRunItem]
    """The first ``DRY_RUN_ITEMS_SHOWN`` items, in order."""
    queue_items_ahead: int
    """Items of this model queued or running now (every tenant and priority)."""
    estimated_inference_s: float | None
    """Device time the job's own items need at the runners' measured padded tokens/s."""
    estimated_completion_at: str | None
    """When a job submitted now would end (RFC 3339): the queue ahead, then its own items, at
    the measured throughput of the live runners."""
    dry_run: bool = True
