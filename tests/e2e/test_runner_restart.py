"""A runner stopped with SIGTERM mid-job, another started: every item counted exactly once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys

from tests.e2e.harness import Service, role_env, wait_terminal


def start_runner(settings) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inferq.cli", "runner"],
                            env=role_env(settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


async def test_sigterm_mid_job_then_a_new_runner_finishes_with_exact_counts(settings) -> None:
    svc = await Service(settings).start(runners=0)
    first = start_runner(settings)
    try:
        texts = [f"item {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 7)
                 for i in range(600)]
        async with svc.client() as c:
            job = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
                {"text": t} for t in texts]})).json()["job_id"]
            while True:  # wait until the first runner is part-way through
                doc = (await c.get(f"/v1/jobs/{job}")).json()
                if doc["counts"]["succeeded"] >= 60:
                    break
                assert first.poll() is None, first.stderr.read().decode()[-2000:]
                await asyncio.sleep(0.1)
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 60) == 0
            mid = (await c.get(f"/v1/jobs/{job}")).json()
            assert mid["status"] == "running" and mid["counts"]["succeeded"] < 600
            second = start_runner(settings)
            try:
                done = await wait_terminal(c, job, within=300)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(60)
        assert done["status"] == "succeeded"
        assert done["counts"] == {"total": 600, "pending": 0, "running": 0, "succeeded": 600,
                                  "failed": 0}
        db = sqlite3.connect(settings.results_url.removeprefix("sqlite:///"))
        rows = db.execute("select count(*), count(distinct idx) from items where job_id = ?",
                          (job,)).fetchone()
        assert rows == (600, 600)
    finally:
        if first.poll() is None:
            first.kill()
        await svc.stop()
