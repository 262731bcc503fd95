"""Queue position and estimated completion on the simulated device, on a steady queue: the
estimate read early for the last of several queued jobs is within the stated error of when
it really ended."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime

from tests.e2e.harness import Service, wait_terminal

ETA_ERROR = 0.25
"""Stated bound: |estimated - actual| / (actual - time of the estimate)."""


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


async def test_eta_on_a_steady_queue(settings) -> None:
    sim = dataclasses.replace(settings, backend="simulated", sim_batch_ms=5.0,
                              sim_token_us=100.0, load_refresh_s=0.2)
    svc = Service(sim)
    await svc.start()
    try:
        async with svc.client() as c:
            def job(n: int, tag: str) -> dict:
                return {"model": "minilm", "inputs": [
                    {"text": f"{tag} steady text number {i} of the queue"} for i in range(n)]}

            # Warm up until the runner has reported its measured capacity.
            while True:
                w = (await c.post("/v1/jobs", json=job(300, "warm"))).json()["job_id"]
                await wait_terminal(c, w)
                r = await c.post("/v1/jobs", params={"dry_run": "true"}, json=job(1, "x"))
                if r.json()["estimated_completion_at"] is not None:
                    break
                await asyncio.sleep(1.0)
            jobs = [(await c.post("/v1/jobs", json=job(400, f"j{k}"))).json()["job_id"]
                    for k in range(6)]
            await asyncio.sleep(0.6)  # a queue sample after every job is in
            async def pending_ahead() -> int:
                n = 0
                for j in jobs[:-1]:
                    n += (await c.get(f"/v1/jobs/{j}")).json()["counts"]["pending"]
                return n

            before = await pending_ahead()
            t_est = time.time()
            last = (await c.get(f"/v1/jobs/{jobs[-1]}")).json()
            after = await pending_ahead()
            first = (await c.get(f"/v1/jobs/{jobs[0]}")).json()
            assert last["status"] == "queued", last
            est = epoch(last["estimated_completion_at"])
            # Items ahead: the earlier jobs' pending items (all this tenant's), as sampled at
            # most load_refresh_s before the read (a batch or two of slack).
            assert after - 150 <= last["queue_position"] <= before + 150, (before, last, after)
            assert first["queue_position"] is None or (
                first["queue_position"] < last["queue_position"]), first
            done = await wait_terminal(c, jobs[-1], within=300)
            assert done["queue_position"] is None and done["estimated_completion_at"] is None
            actual = epoch(done["finished_at"])
            error = abs(est - actual) / (actual - t_est)
            print(f"\nETA: estimated {est - t_est:.2f} s, took {actual - t_est:.2f} s, "
                  f"error {error:.1%} (queue position {last['queue_position']})")
            assert error <= ETA_ERROR, (est - t_est, actual - t_est)
    finally:
        await svc.stop()
