"""Fair share through the running service: order and proportions, never wall time."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

from tests.e2e.harness import Service, make_settings, wait_terminal

SENTENCE = "Fair scheduling keeps a small tenant from waiting behind a large one's backlog."


def texts(n: int, tag: str) -> list[dict]:
    return [{"text": f"{tag} {i}. {SENTENCE}"} for i in range(n)]


async def test_a_one_item_interactive_job_finishes_while_most_of_a_big_backlog_waits(
        service) -> None:
    async with service.client("alpha") as a, service.client("beta") as b:
        big = (await a.post("/v1/jobs", json={"model": "minilm",
                                              "inputs": texts(5000, "a")})).json()["job_id"]
        for _ in range(2400):  # until A's work is flowing
            if (await a.get(f"/v1/jobs/{big}")).json()["counts"]["succeeded"] >= 50:
                break
            await asyncio.sleep(0.05)
        small = (await b.post("/v1/jobs", json={"model": "minilm", "priority": "interactive",
                                                "input": {"text": "me too"}})).json()["job_id"]
        done = await wait_terminal(b, small, within=120)
        big_doc = (await a.get(f"/v1/jobs/{big}")).json()
    assert done["status"] == "succeeded"
    assert big_doc["status"] == "running"
    assert big_doc["counts"]["succeeded"] + big_doc["counts"]["failed"] < 2500  # most queued


async def test_weights_3_to_1_serve_equal_backlogs_about_3_to_1(tmp_path, nats_url, redis_url,
                                                                 model_repo) -> None:
    settings = make_settings(tmp_path, nats_url, redis_url, model_repo, chunk_items=16,
                             weights={"alpha": 3.0, "beta": 1.0})
    svc = await Service(settings).start(schedulers=0)
    try:
        async with svc.client("alpha") as a, svc.client("beta") as b:
            ja = (await a.post("/v1/jobs", json={"model": "minilm",
                                                 "inputs": texts(1200, "a")})).json()["job_id"]
            jb = (await b.post("/v1/jobs", json={"model": "minilm",
                                                 "inputs": texts(1200, "b")})).json()["job_id"]
            await svc.add_scheduler()  # both backlogs are queued before fair share starts
            while True:
                da = (await a.get(f"/v1/jobs/{ja}")).json()["counts"]["succeeded"]
                db = (await b.get(f"/v1/jobs/{jb}")).json()["counts"]["succeeded"]
                if da + db >= 800 or da >= 1200:
                    break
                await asyncio.sleep(0.05)
    finally:
        await svc.stop()
    # Tolerance: 25% around 3:1 over a window of ~800 items (16-item chunks, 64-item batches).
    print(f"served alpha:beta = {da}:{db} = {da / max(db, 1):.2f}")
    assert 2.25 <= da / max(db, 1) <= 3.75, (da, db)


async def test_two_schedulers_and_two_runners_count_every_item_once(tmp_path, nats_url,
                                                                    redis_url, model_repo) -> None:
    settings = make_settings(tmp_path, nats_url, redis_url, model_repo, chunk_items=64)
    settings = dataclasses.replace(settings, backend_threads=1)
    svc = await Service(settings).start(schedulers=2, runners=2)
    try:
        async with svc.client("alpha") as a:
            job = (await a.post("/v1/jobs", json={"model": "minilm",
                                                  "inputs": texts(2000, "x")})).json()["job_id"]
            done = await wait_terminal(a, job, within=300)
        assert done["counts"] == {"total": 2000, "pending": 0, "running": 0, "succeeded": 2000,
                                  "failed": 0}
        assert all(s.scheduler.published_batches > 0 for s in svc.schedulers)  # both worked
        assert all(r.runner.batches_done > 0 for r in svc.runners)
        db = sqlite3.connect(settings.results_url.removeprefix("sqlite:///"))
        assert db.execute("select count(*), count(distinct idx) from items where job_id = ?",
                          (job,)).fetchone() == (2000, 2000)
    finally:
        await svc.stop()
