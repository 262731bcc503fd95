"""Watching jobs through the API while chaos happens: every status seen (it must never move
backwards), every answer by status and code, and waits for progress that fail with what was
seen."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from schemas.states import JOB_RANK, TERMINAL_JOB, JobStatus


class StatusWatch:
    """Polls a job and records every status seen: status must never move backwards."""

    def __init__(self, client: httpx.AsyncClient, job_id: str, interval: float = 0.1):
        self.job_id = job_id
        self.interval = interval
        self.seen: list[str] = []
        self.errors_5xx = 0
        self.answers: Counter[str] = Counter()
        """Every answer by status and code, e.g. ``200``, ``503 unavailable``."""
        self._client = client
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while not self._client.is_closed:  # (a test that failed early closed it)
            try:
                r = await self._client.get(f"/v1/jobs/{self.job_id}")
                self.answers[answer(r)] += 1
                if r.status_code >= 500:
                    self.errors_5xx += 1
                elif r.status_code == 200:
                    s = r.json()["status"]
                    if not self.seen or self.seen[-1] != s:
                        self.seen.append(s)
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
            await asyncio.sleep(self.interval)

    async def until_terminal(self, within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.seen and self.seen[-1] in TERMINAL_JOB:
                await asyncio.sleep(0.3)  # a late backwards move would show here
                self._task.cancel()
                return self.seen[-1]
            await asyncio.sleep(0.1)
        self._task.cancel()
        raise AssertionError(f"job {self.job_id} not terminal after {within}s: {self.seen}")

    def assert_monotonic(self) -> None:
        ranks = [JOB_RANK[JobStatus(s)] for s in self.seen]
        assert ranks == sorted(ranks), f"status moved backwards: {self.seen}"
        assert len([s for s in self.seen if s in TERMINAL_JOB]) == 1, self.seen


def answer(r: httpx.Response) -> str:
    """``200``, or an error's status and envelope code: ``503 unavailable``."""
    if r.status_code < 400:
        return str(r.status_code)
    try:
        return f"{r.status_code} {r.json().get('code')}"
    except ValueError:
        return f"{r.status_code} (no envelope)"


async def done_items(client: httpx.AsyncClient, job_id: str) -> int:
    """Succeeded + failed, from the status document (0 while it cannot be read)."""
    r = await client.get(f"/v1/jobs/{job_id}")
    if r.status_code != 200:
        return 0
    counts = r.json()["counts"]
    return counts["succeeded"] + counts["failed"]


async def until_done(client: httpx.AsyncClient, job_id: str, at_least: int,
                     within: float = 120) -> int:
    """Wait until the job has at least ``at_least`` items done; returns how many."""
    deadline = time.monotonic() + within
    while (done := await done_items(client, job_id)) < at_least:
        assert time.monotonic() < deadline, f"{job_id}: {done} < {at_least} after {within}s"
        await asyncio.sleep(0.05)
    return done


async def until_all_terminal(client: httpx.AsyncClient, jobs: dict[str, int], within: float,
                             stall_s: float = 30) -> None:
    """Wait until every job is terminal; fail early once no item has been counted anywhere for
    ``stall_s`` (longer than any AckWait here: redelivery would have made progress)."""
    deadline = time.monotonic() + within
    last, since = -1, time.monotonic()
    while True:
        docs = [(await client.get(f"/v1/jobs/{j}")) for j in jobs]
        docs = [r.json() for r in docs if r.status_code == 200]
        if len(docs) == len(jobs) and all(d["status"] in TERMINAL_JOB for d in docs):
            return
        done = sum(d["counts"]["succeeded"] + d["counts"]["failed"] for d in docs)
        if done != last:
            last, since = done, time.monotonic()
        now = time.monotonic()
        assert now - since < stall_s, f"stalled: {done} of {sum(jobs.values())} items done, " \
                                      f"no progress for {stall_s}s"
        assert now < deadline, f"not terminal after {within}s: {done} of {sum(jobs.values())}"
        await asyncio.sleep(0.2)
