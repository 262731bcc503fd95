"""The item results a runner writes: one constructor per terminal state, so every record
carries the runner's model version and an ``ItemStatus``, however the item ended."""

from __future__ import annotations

import numpy as np

from schemas.bus import BatchItem, FailedItem
from schemas.errors import ErrorCode, ItemError
from schemas.states import ItemStatus
from store.results.base import ItemRecord
from store.results.codec import pack_embedding


def item_error(code: str, message: str) -> ItemError:
    """The error of an item the scheduler failed before batching. A code this build does not
    know (sent by a newer scheduler) is kept as sent rather than refused."""
    try:
        known = ErrorCode(code)
    except ValueError:
        return ItemError(code, message)
    return ItemError.of(known, message)


def failed(item: BatchItem | FailedItem, err: ItemError, version: int, now: float) -> ItemRecord:
    """A failed item's record: ``err`` is what the client reads for it."""
    return ItemRecord(job_id=item.job_id, index=item.index, status=ItemStatus.FAILED,
                      model_version=version, client_id=item.client_id, error_code=err.code,
                      error_message=err.message, error_retryable=err.retryable, finished_at=now)


def succeeded(item: BatchItem, vector: np.ndarray, version: int, now: float, *,
              simulated: bool = False) -> ItemRecord:
    """An inferred item's record, its embedding encoded as the gateway reads it back
    (``simulated``: made by the simulated device, and the results will say so)."""
    return ItemRecord(job_id=item.job_id, index=item.index, status=ItemStatus.SUCCEEDED,
                      model_version=version, client_id=item.client_id,
                      output=pack_embedding(vector, len(item.token_ids), item.truncated,
                                            simulated=simulated),
                      finished_at=now)
