"""Triage of a batch: mark its items running, which also tells which of their jobs are still
live, and sort them into results known without inference and items to run."""

from __future__ import annotations

from collections import defaultdict

from gpu_runner import records
from gpu_runner.writeback import WriteBack
from schemas.bus import Batch, BatchItem
from schemas.states import TERMINAL_JOB
from store.results.base import ItemRecord


class Triage:
    """Sorts a batch's items before anything runs; every delivery of a batch goes through it
    (first, redelivered, or dead-lettered), so a terminal job is never written to."""

    def __init__(self, writeback: WriteBack, version: int):
        self._writeback = writeback
        self._version = version

    async def sort(self, batch: Batch, now: float) -> tuple[list[ItemRecord], list[BatchItem]]:
        """Results to record without running (pre-failed) and items to run. Items of jobs
        that are terminal (cancelled, deadline passed) or gone (expired) are stale: nothing is
        written for them. Nor for items of a job past its deadline but not yet ended: the
        gateway's job-level end, due at the deadline, fails every item not yet counted and
        ends the job ``failed`` with ``deadline_exceeded`` — counting them failed here, one
        by one, could count the job's last item first and end it by its counts instead."""
        indexes: dict[str, list[int]] = defaultdict(list)
        for it in batch.items:
            indexes[it.job_id].append(it.index)
        for f in batch.failed:
            indexes[f.job_id].append(f.index)
        statuses = await self._writeback.mark_running(indexes, now)
        live = {j for j, s in statuses.items() if s is not None and s not in TERMINAL_JOB}
        known = [records.failed(f, records.item_error(f.code, f.message), self._version, now)
                 for f in batch.failed if f.job_id in live]
        run: list[BatchItem] = []
        for it in batch.items:
            if it.job_id not in live:
                continue
            if batch.deadlines.get(it.job_id, float("inf")) > now:
                run.append(it)
        return known, run
