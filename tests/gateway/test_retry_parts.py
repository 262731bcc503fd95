"""A retry's job keeps its parent's metadata, less the OpenAI batch record: retrying a batch's
failed items makes a job of the tenant's, not a second view of the batch."""

from __future__ import annotations

from gateway.retry import _own_metadata
from schemas.openai_batch import BATCH_RECORD_KEY
from store.results.base import JobRecord


def job(metadata: dict | None) -> JobRecord:
    return JobRecord(job_id="j", tenant="t", model="minilm", model_version=1,
                     priority="batch", total=3, chunks=1, created_at=0.0, expires_at=1.0,
                     metadata=metadata)


def test_the_batch_record_stays_with_the_parent() -> None:
    assert _own_metadata(job({BATCH_RECORD_KEY: {"id": "batch_j"}, "team": "a"})) == \
        {"team": "a"}
    assert _own_metadata(job({BATCH_RECORD_KEY: {"id": "batch_j"}})) is None
    assert _own_metadata(job({"team": "a"})) == {"team": "a"}
    assert _own_metadata(job(None)) is None
