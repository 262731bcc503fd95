"""Poll hints: the expected wait from the model's backlog and measured throughput, clamped;
none for a terminal job; a size-based guess before any throughput is measured."""

from __future__ import annotations

import time

from gateway.load import LoadView, ModelLoad
from schemas.states import JobStatus, Priority
from store.jobstate import JobStatusSnapshot


def snap(status: JobStatus, total: int, done: int = 0,
         priority: Priority = Priority.BATCH) -> JobStatusSnapshot:
    now = time.time()
    return JobStatusSnapshot(
        job_id="j", tenant="t", model="minilm", version=1, priority=priority, total=total,
        created_at=now, expires_at=now + 60, deadline=None, status=status, outcome=None,
        started_at=None, finished_at=None, error=None, succeeded=done, failed=0, running=0,
        rev=1)


def view(backlog: int = 0, rate: float | None = None, interactive: int = 0) -> LoadView:
    v = LoadView(None, None, None, max_hint_s=30)  # type: ignore[arg-type]
    v._models = {"minilm": ModelLoad(backlog, interactive, rate)}
    return v


def test_a_terminal_job_has_no_hint() -> None:
    assert view(100, 50).poll_hint(snap(JobStatus.SUCCEEDED, 10, 10)) is None
    assert view(100, 50).poll_hint(snap(JobStatus.FAILED, 10, 0)) is None


def test_a_queued_job_waits_for_the_backlog_ahead_of_it() -> None:
    # 1,000 items in the model's backlog, 100 of them this job's: 1,000 / 100 per s = 10 s.
    assert view(1_000, 100.0).poll_hint(snap(JobStatus.QUEUED, 100)) == 10


def test_an_interactive_job_waits_only_for_interactive_work_ahead_of_it() -> None:
    # 10,000 batch items queued do not delay a 1-item interactive job; 300 interactive do.
    busy = view(10_000 + 300 + 1, 100.0, interactive=300 + 1)
    assert busy.poll_hint(snap(JobStatus.QUEUED, 1, priority=Priority.INTERACTIVE)) == 4
    assert view(10_001, 100.0, interactive=1).poll_hint(
        snap(JobStatus.QUEUED, 1, priority=Priority.INTERACTIVE)) == 1
    assert busy.poll_hint(snap(JobStatus.QUEUED, 1)) == 30  # a batch job waits for it all


def test_a_running_job_waits_for_its_own_remaining_items() -> None:
    assert view(1_000, 100.0).poll_hint(snap(JobStatus.RUNNING, 500, done=200)) == 3


def test_hints_are_clamped_to_one_and_the_maximum() -> None:
    assert view(10, 1_000.0).poll_hint(snap(JobStatus.QUEUED, 5)) == 1
    assert view(10**6, 10.0).poll_hint(snap(JobStatus.QUEUED, 5)) == 30


def test_without_a_measured_rate_the_hint_goes_by_size() -> None:
    assert view(0, None).poll_hint(snap(JobStatus.QUEUED, 50)) == 1
    assert view(0, None).poll_hint(snap(JobStatus.QUEUED, 1_000)) == 2
    assert view(0, None).poll_hint(snap(JobStatus.QUEUED, 9_000)) == 5
    assert view().drain_s("unknown-model", 10) is None
