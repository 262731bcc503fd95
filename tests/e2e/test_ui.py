"""``/ui`` in a real headless Chromium (Debian's ``chromium`` driven by Playwright): a job
submitted through the API is watched to completion on the page, its page lists the failed
items and downloads the JSONL; the operator view needs the operator key.

Screenshots go to ``$INFERQ_UI_SCREENSHOTS`` (a directory, made if missing), else to the
test's tmp dir; the test prints where. Without Chromium or Playwright the test skips, saying
why, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from core.tenants import hmac_key
from tests.e2e.harness import KEYS, Service

PEPPER = "ui-test-pepper"
OPERATOR_KEY = "op-ui-key-0123456789"
TIMEOUT_MS = 120_000
EXPECTED = re.compile(r"Failed to load resource: .* (401|403) ")
"""The browser logs the wrong keys this test signs in with; anything else is a fault."""


def chromium_or_skip() -> str:
    """The Chromium executable, or skip (fail under CI=true) saying what is missing."""
    path = os.environ.get("INFERQ_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")
    missing = []
    if not path:
        missing.append("no chromium (Debian: apt-get install -y chromium; or INFERQ_CHROMIUM)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("no playwright (pip install -e '.[test]')")
    if missing:
        reason = "the /ui browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("INFERQ_UI_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


async def test_a_job_is_watched_to_completion_on_the_page(settings, shots: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.async_api import async_playwright, expect

    # The simulated device (a fixed 1 s per batch of at most 64) makes a job last long enough
    # to be watched, without the model's CPU load; everything else is the real service.
    svc = Service(dataclasses.replace(
        settings, api_key_pepper=PEPPER, operator_api_key_hmac=hmac_key(OPERATOR_KEY, PEPPER),
        backend="simulated", sim_batch_ms=1000.0))
    await svc.start()
    problems: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium)
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" and
                    not EXPECTED.search(m.text) else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            await page.goto(f"{svc.url}/ui")
            key = page.get_by_label("Key", exact=True)
            await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            # Keyboard only: the label names the field, Enter submits.
            await key.fill("wrong-key")
            await key.press("Enter")
            await expect(page.get_by_role("alert").first).to_have_text("Unknown key.")
            await key.fill(KEYS["alpha"])
            await key.press("Enter")
            await expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
            assert await page.evaluate("sessionStorage.getItem('inferq.key')") == KEYS["alpha"]

            # A mixed job: 3 empty texts fail (empty_text), the rest succeed.
            texts = [("" if i in (5, 17, 29) else f"the page watches item {i} of this job")
                     for i in range(200)]
            async with svc.client("alpha") as api:
                r = await api.post("/v1/jobs", json={"model": "minilm", "inputs": [
                    {"text": t, "id": f"item-{i}"} for i, t in enumerate(texts)]})
                assert r.status_code == 202, r.text
                job_id = r.json()["job_id"]

            row = page.locator(f'li[data-job="{job_id}"]')
            await expect(row).to_be_visible()
            statuses: set[str | None] = set()
            # Watch it move: the status the page shows, until it is terminal.
            for _ in range(TIMEOUT_MS // 250):
                status = await row.get_attribute("data-status")
                if status in ("queued", "running") and status not in statuses:
                    await page.screenshot(path=str(shots / f"ui-jobs-{status}.png"))
                statuses.add(status)
                if status in ("succeeded", "failed"):
                    break
                await page.wait_for_timeout(250)
            assert status == "succeeded", statuses
            assert statuses & {"queued", "running"}, statuses  # seen before its end
            print(f"\nthe page showed the job {sorted(map(str, statuses))}")
            bar = row.get_by_role("progressbar")
            await expect(bar).to_have_attribute("aria-valuenow", "200")
            await expect(row).to_contain_text("partial")
            await page.screenshot(path=str(shots / "ui-jobs.png"), full_page=True)

            # Its page, by keyboard: focus the link, Enter.
            await row.get_by_role("link", name=job_id).focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
            failed = page.locator("#failed tbody tr")
            await expect(failed).to_have_count(3)
            await expect(failed.first).to_contain_text("empty_text")
            await expect(failed.first).to_contain_text("item-5")
            async with page.expect_download() as dl:
                await page.get_by_role("button", name="Download results (JSONL)").click()
            saved = Path(await (await dl.value).path())
            lines = (await asyncio.to_thread(saved.read_text)).splitlines()
            assert len(lines) == 200 and json.loads(lines[5])["status"] == "failed"
            await page.screenshot(path=str(shots / "ui-job.png"), full_page=True)

            # The same page on a phone.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path=str(shots / "ui-job-phone.png"), full_page=True)
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth + 1")

            # The operator view: a tenant key is refused, the operator key shows the overview,
            # with two tenants' jobs in flight (submitted before it samples: its baseline).
            await page.set_viewport_size({"width": 1100, "height": 900})
            for tenant, n in (("alpha", 300), ("beta", 100)):
                async with svc.client(tenant) as api:
                    r = await api.post("/v1/jobs", json={"model": "minilm", "inputs": [
                        {"text": f"{tenant} keeps the runner busy with item {i}"}
                        for i in range(n)]})
                    assert r.status_code == 202, r.text
            await page.get_by_role("button", name="Sign out").click()
            await page.get_by_label("Operator (operator key)").check()
            await key.fill(KEYS["alpha"])
            await key.press("Enter")
            await expect(page.get_by_role("alert").first).to_contain_text("tenant key")
            await key.fill(OPERATOR_KEY)
            await key.press("Enter")
            await expect(page.get_by_role("heading", name="Operator")).to_be_visible()
            await expect(page.locator("#op-runners tbody tr")).to_have_count(1)
            await expect(page.locator("#op-runners")).to_contain_text("minilm@")
            await expect(page.locator("#op-dlq")).to_have_text("0")
            await page.screenshot(path=str(shots / "ui-operator-live.png"), full_page=True)
            await expect(page.locator("#op-tenants tbody tr")).to_have_count(3)
            finished = page.locator('#op-tenants td[data-label="Finished in window"]')
            await expect(finished.nth(0)).to_have_text("300", timeout=TIMEOUT_MS)
            await expect(finished.nth(1)).to_have_text("100", timeout=TIMEOUT_MS)
            await expect(page.locator("#op-tenants")).to_contain_text("throughput 75%")
            await page.screenshot(path=str(shots / "ui-operator.png"), full_page=True)
            await browser.close()
        async with httpx.AsyncClient(base_url=svc.url) as anon:
            r = await anon.get("/ui")
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert (await anon.get("/ui/static/app.js")).status_code == 200
    finally:
        await svc.stop()
    assert not problems, problems  # no script error, no CSP violation
    print(f"\n/ui screenshots: {shots}")
