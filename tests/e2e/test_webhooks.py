"""Webhooks through the real stack: a job's end reaches a real HTTP receiver, signed with the
tenant's secret (Standard Webhooks); failures are retried with backoff until exactly one
success; a gateway killed mid-delivery leaves the delivery to another; every attempt is
listed by ``GET /v1/jobs/{id}/webhook-deliveries``."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import signal
import subprocess
import sys

import pytest

from core import webhook_signature as sig
from inferq.client import Client, verify_webhook
from inferq.embedded import free_port
from tests.e2e.harness import KEYS, Service, role_env, wait_terminal
from tests.e2e.webhook_receiver import HANG, Receiver
from tests.gateway.support import assert_problem, tenants_with

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
WEBHOOK_SETTINGS = dict(webhook_allow_http=True, webhook_allowed_networks="127.0.0.0/8",
                        webhook_backoff_s=0.05, webhook_backoff_max_s=0.2,
                        webhook_poll_s=0.05, webhook_lease_s=3.0, webhook_timeout_s=2.0)


def hook_settings(settings, tmp_path, **overrides):
    tenants = tenants_with(tmp_path / "hook-tenants.toml", alpha={"webhook_secret": SECRET})
    return dataclasses.replace(settings, tenants_file=tenants, backend="simulated",
                               **{**WEBHOOK_SETTINGS, **overrides})


async def wait_state(c, job_id: str, state: str, within: float = 30.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        r = await c.get(f"/v1/jobs/{job_id}/webhook-deliveries")
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["state"] == state:
            return doc
        assert loop.time() < deadline, doc
        await asyncio.sleep(0.05)


async def test_a_job_end_arrives_signed_with_the_status_document(settings, tmp_path) -> None:
    svc = await Service(hook_settings(settings, tmp_path)).start()
    try:
        async with Receiver() as rx, svc.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
                {"text": "hello"}, {"text": "world"}], "webhook": {"url": rx.url}})
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            done = await wait_terminal(c, job)
            log = await wait_state(c, job, "delivered")
            [got] = rx.received
            sig.verify(SECRET, got.headers, got.body)  # a receiver's own check passes
            with pytest.raises(sig.InvalidSignature):
                sig.verify("whsec_" + base64.b64encode(b"another secret").decode(),
                           got.headers, got.body)
            assert got.headers["webhook-id"] == log["webhook_id"] == f"msg_{job}"
            assert got.headers["content-type"] == "application/json"
            body = json.loads(got.body)
            assert body == done  # the body is the status document
            assert body["status"] == "succeeded" and body["queue_position"] is None
            assert log["url"] == rx.url and log["events"] == ["job.succeeded", "job.failed"]
            [attempt] = log["attempts"]
            assert attempt["attempt"] == 1 and attempt["succeeded"] is True
            assert attempt["status_code"] == 200 and log["next_attempt_at"] is None
    finally:
        await svc.stop()


async def test_a_receiver_failing_three_times_gets_exactly_one_success(settings, tmp_path
                                                                       ) -> None:
    svc = await Service(hook_settings(settings, tmp_path)).start()
    try:
        async with Receiver(script=[500, 503, 404, 200]) as rx, svc.client() as c, \
                Client(svc.url, KEYS["alpha"]) as client:
            job = (await client.submit(["x"], model="minilm", webhook=rx.url))["job_id"]
            log = await wait_state(c, job, "delivered")
            assert await client.webhook_deliveries(job) == log
            await asyncio.sleep(0.5)  # nothing more comes after the success
            assert [g.answered for g in rx.received] == [500, 503, 404, 200]
            assert len(rx.successes) == 1
            assert len({g.headers["webhook-id"] for g in rx.received}) == 1
            for g in rx.received:
                verify_webhook(SECRET, g.headers, g.body)  # the client's helper
            attempts = log["attempts"]
            assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
            assert [a.get("status_code") for a in attempts] == [500, 503, 404, 200]
            assert [a["succeeded"] for a in attempts] == [False, False, False, True]
            assert attempts[0]["error"] == "HTTP 500"
    finally:
        await svc.stop()


def start_gateway(settings) -> subprocess.Popen:
    env = role_env(settings, INFERQ_HTTP_PORT=str(free_port()), INFERQ_TENANTS_FILE=str(
        settings.tenants_file), **{f"INFERQ_{k.upper()}": str(v)
                                   for k, v in WEBHOOK_SETTINGS.items()})
    return subprocess.Popen([sys.executable, "-m", "inferq.cli", "gateway"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_a_gateway_killed_mid_delivery_leaves_it_to_another(settings, tmp_path) -> None:
    # This process serves the API and runs the job but delivers nothing (concurrency 0):
    # deliveries are made by gateway processes, the first of which is killed mid-request.
    local = hook_settings(settings, tmp_path, webhook_concurrency=0)
    svc = await Service(local).start()
    first = second = None
    try:
        async with Receiver(script=[HANG]) as rx, svc.client() as c:
            first = start_gateway(local)
            job = (await c.post("/v1/jobs", json={"model": "minilm", "input": {"text": "x"},
                                                  "webhook": {"url": rx.url}})).json()["job_id"]
            await wait_terminal(c, job)
            await rx.wait_for(1, within=60)  # the first gateway is in the middle of it
            first.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
            rx.release()
            second = start_gateway(local)
            log = await wait_state(c, job, "delivered", within=60)
            assert len(rx.received) == 2 and len(rx.successes) == 1
            # The killed attempt was never finished, so never recorded: its number is skipped.
            assert [(a["attempt"], a["succeeded"]) for a in log["attempts"]] == [(2, True)]
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                await asyncio.to_thread(p.wait, 30)
        await svc.stop()


async def test_ends_without_runners_cancel_and_event_filter(settings, tmp_path) -> None:
    svc = Service(hook_settings(settings, tmp_path))
    await svc.start(runners=0)
    try:
        async with Receiver() as rx, svc.client() as c:
            failed_only = (await c.post("/v1/jobs", json={
                "model": "minilm", "input": {"text": "x"},
                "webhook": {"url": rx.url, "events": ["job.failed"]}})).json()["job_id"]
            succeeded_only = (await c.post("/v1/jobs", json={
                "model": "minilm", "input": {"text": "y"},
                "webhook": {"url": rx.url, "events": ["job.succeeded"]}})).json()["job_id"]
            assert (await c.get(f"/v1/jobs/{failed_only}/webhook-deliveries")).json()[
                "state"] == "pending"
            for job in (failed_only, succeeded_only):  # ended by the gateway, not a runner
                assert (await c.post(f"/v1/jobs/{job}/cancel")).status_code == 200
            await wait_state(c, failed_only, "delivered")
            skipped = await wait_state(c, succeeded_only, "skipped")
            assert skipped["attempts"] == []
            [got] = rx.received
            assert json.loads(got.body)["error"]["code"] == "cancelled"
            plain = (await c.post("/v1/jobs", json={"model": "minilm",
                                                    "input": {"text": "z"}})).json()["job_id"]
            assert (await c.get(f"/v1/jobs/{plain}/webhook-deliveries")).json() == {
                "job_id": plain, "state": "none", "url": None, "events": [],
                "webhook_id": None, "next_attempt_at": None, "attempts": []}
        async with svc.client("beta") as other:  # another tenant's job: 404
            assert_problem(await other.get(f"/v1/jobs/{failed_only}/webhook-deliveries"), 404,
                           "job_not_found")
            # beta has no webhook secret: it cannot ask for webhooks
            r = await other.post("/v1/jobs", json={"model": "minilm", "input": {"text": "x"},
                                                   "webhook": {"url": "https://example.com/"}})
            assert_problem(r, 400, "invalid_request")
    finally:
        await svc.stop()


@pytest.mark.parametrize("url", [
    "http://example.com/hook",          # not https
    "https://127.0.0.1/hook",           # loopback
    "https://10.1.2.3/hook",            # private
    "https://169.254.169.254/latest",   # link-local (cloud metadata)
    "https://[::ffff:127.0.0.1]/hook",  # loopback in IPv6 clothing
    "https://user:pw@example.com/hook",  # credentials
    "ftp://example.com/",
])
async def test_webhook_urls_refused_without_the_operator_allowing_them(settings, tmp_path,
                                                                      url) -> None:
    tenants = tenants_with(tmp_path / "t.toml", alpha={"webhook_secret": SECRET})
    svc = Service(dataclasses.replace(settings, tenants_file=tenants))  # default policy
    await svc.start(runners=0, schedulers=0)
    try:
        async with svc.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "input": {"text": "x"},
                                               "webhook": {"url": url}})
            body = assert_problem(r, 400, "invalid_request")
            assert body["errors"][0]["pointer"] == "/webhook/url", body
    finally:
        await svc.stop()
