"""inferq load test: tenants' engineers submitting jobs, polling them, and fetching results.

Each simulated user is one engineer of one tenant (API keys from ``INFERQ_LOADTEST_KEYS``, one per
tenant, dealt round-robin to users). In a loop it submits a job whose size is drawn from the
configured mix (default 1, 32 and 1,000 items of real English sentences), with an
``Idempotency-Key`` reused on every retry; polls the status with ``If-None-Match`` at the pace
the gateway's ``Retry-After`` asks for; pages through the results; and reports the job's
submit-to-terminal time as a ``JOB`` request row (a custom Locust event) per job size.

    locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 2m \\
        --host http://127.0.0.1:8000 --csv out/run

Only loopback targets are accepted and every run has a hard deadline (see ``loadconfig``).
Reading the output and turning it into runner counts: docs/loadtest.md.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import uuid
from pathlib import Path

import gevent
import gevent.event
from corpus import item_text
from loadconfig import LoadConfig, api_keys, check_loopback
from locust import HttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner
from report import JobTally
from sampler import MetricsSampler, metrics_urls

log = logging.getLogger("inferq.loadtest")
CFG = LoadConfig.from_env()
TALLY = JobTally()
TERMINAL = {"succeeded", "failed"}  # the API's terminal statuses (stand-alone: no inferq import)
RETRYABLE = {0, 409, 429, 502, 503, 504}  # 0: no response (connection error, timeout)
REFUSED = gevent.event.Event()  # set when a safety rail refuses the run: no request goes out
SAMPLER: list[MetricsSampler] = []  # the running one, if the run writes CSVs
_user_seq = itertools.count()


def retry_after(resp, default: float = 1.0, cap: float = 30.0) -> float:
    """The server's ``Retry-After`` in seconds (delta form), bounded to ``[0.1, cap]``."""
    try:
        value = float(resp.headers.get("Retry-After", default))
    except (TypeError, ValueError):
        value = default
    return min(cap, max(0.1, value))


def _problem_code(resp) -> str:
    """The problem+json ``code`` (clients branch on it), or a short reason when there is none."""
    try:
        return str(resp.json().get("code", ""))
    except (ValueError, AttributeError, TypeError):  # not JSON, or no response at all
        return (resp.text or str(getattr(resp, "error", "") or ""))[:80]


def _fail(resp, rejected_name: str) -> None:
    """Mark a response failed with its status and code; backpressure gets its own row."""
    if resp.status_code in (409, 429, 503):
        resp.request_meta["name"] = rejected_name
        TALLY.rejected(resp.status_code)
    resp.failure(f"{resp.status_code} {_problem_code(resp)}")


def _refuse(environment, why: str) -> None:
    log.error("inferq load test refused: %s", why)
    REFUSED.set()
    environment.process_exit_code = 2
    if environment.runner is not None:
        gevent.spawn(environment.runner.quit)


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """Safety rails first (loopback, keys), then the hard deadline, then a fresh tally."""
    if isinstance(environment.runner, WorkerRunner):
        return
    why = check_loopback(environment.host)
    if why is None:
        try:
            api_keys()
        except RuntimeError as exc:
            why = str(exc)
    if why is not None:
        _refuse(environment, why)
        return
    REFUSED.clear()
    TALLY.reset()
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if csv_prefix and not SAMPLER:  # the service's gauges over time, for report.py's plots
        try:
            SAMPLER.append(MetricsSampler(metrics_urls(environment.host),
                                          Path(f"{csv_prefix}_metrics.csv")))
        except ValueError as exc:  # a metrics URL that is not loopback
            _refuse(environment, str(exc))
            return
        SAMPLER[0].start()

    def deadline() -> None:
        log.warning("inferq load test: hard deadline of %.0f s reached, stopping", CFG.max_run_s)
        environment.runner.quit()

    gevent.spawn_later(CFG.max_run_s, deadline)


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    while SAMPLER:
        SAMPLER.pop().stop()
    if TALLY.by_size:
        options = environment.parsed_options
        print(TALLY.write(getattr(options, "csv_prefix", None) if options else None))


class TenantEngineer(HttpUser):
    """Submit, poll until terminal, fetch every result page, think, repeat."""

    wait_time = between(*CFG.think_s)

    def on_start(self) -> None:
        """Take the next tenant's key (the rails were checked once, at test start)."""
        keys = api_keys()
        n = next(_user_seq)
        self.tenant = f"tenant{n % len(keys)}"
        self.client.headers["Authorization"] = f"Bearer {keys[n % len(keys)]}"
        self.rng = random.Random(n)

    def _report_job(self, size: int, started: float, error: str | None) -> None:
        seconds = time.monotonic() - started
        TALLY.terminal(size, seconds, ok=error is None)
        self.environment.events.request.fire(
            request_type="JOB", name=f"submit-to-terminal [n={size}]",
            response_time=seconds * 1000.0, response_length=size,
            exception=RuntimeError(error) if error else None, context={"tenant": self.tenant})

    def _job_body(self, size: int) -> dict:
        return {"model": CFG.model,
                "priority": "interactive" if size <= CFG.interactive_max_items else "batch",
                "inputs": [{"id": f"i{i}", "text": item_text(self.rng)} for i in range(size)]}

    def _submit(self, body: dict, size: int) -> dict | None:
        """POST the job; retried with the same Idempotency-Key so a retry never makes a twin.

        Pushed-back attempts (429/503/409) are reported as ``POST /v1/jobs (rejected)`` so the
        per-size rows keep the latency of accepted submits only."""
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for _ in range(CFG.submit_attempts):
            with self.client.post("/v1/jobs", json=body, headers=headers,
                                  name=f"POST /v1/jobs [n={size}]", catch_response=True) as r:
                if r.status_code == 202:
                    doc = r.json()
                    doc["_etag"], doc["_retry_after"] = r.headers.get("ETag"), retry_after(r)
                    return doc
                _fail(r, "POST /v1/jobs (rejected)")
                if r.status_code not in RETRYABLE:
                    return None
                pause = retry_after(r)
            gevent.sleep(pause)
        return None

    def _wait_terminal(self, job: dict, deadline: float) -> dict | None:
        """Poll with If-None-Match at the gateway's pace until terminal or the deadline."""
        etag, doc, pause = job.get("_etag"), job, job.get("_retry_after", 1.0)
        while doc.get("status") not in TERMINAL:
            if time.monotonic() + pause > deadline:
                return None
            gevent.sleep(pause)
            headers = {"If-None-Match": etag} if etag else {}
            with self.client.get(f"/v1/jobs/{job['job_id']}", headers=headers,
                                 name="GET /v1/jobs/{id}", catch_response=True) as r:
                pause = retry_after(r)
                if r.status_code == 200:
                    doc, etag = r.json(), r.headers.get("ETag", etag)
                elif r.status_code != 304:
                    _fail(r, "GET /v1/jobs/{id} (rejected)")
                    if r.status_code not in RETRYABLE:
                        return None
        return doc

    def _fetch_results(self, job_id: str) -> int:
        """Page through every item result; the number of items seen."""
        seen, cursor = 0, None
        while True:
            params = {"limit": CFG.page_limit, **({"cursor": cursor} if cursor else {})}
            with self.client.get(f"/v1/jobs/{job_id}/results", params=params,
                                 name="GET /v1/jobs/{id}/results", catch_response=True) as r:
                if r.status_code != 200:
                    _fail(r, "GET /v1/jobs/{id}/results (rejected)")
                    if r.status_code not in RETRYABLE:
                        return seen
                    pause = retry_after(r)
                else:
                    page = r.json()
                    seen += len(page["items"])
                    cursor = page.get("next_cursor")
                    if not cursor:
                        return seen
                    continue
            gevent.sleep(pause)

    @task
    def submit_poll_fetch(self) -> None:
        """One job's life as a client sees it; the JOB row records submit-to-terminal time."""
        if REFUSED.is_set():
            raise StopUser()
        size = self.rng.choices([s for s, _ in CFG.mix], weights=[w for _, w in CFG.mix])[0]
        body = self._job_body(size)
        started = time.monotonic()  # the client's view: from the first submit attempt
        job = self._submit(body, size)
        if job is None:
            return  # rejected for good: already counted as a failed POST
        TALLY.submitted(size)
        doc = self._wait_terminal(job, started + CFG.max_job_wait_s)
        if doc is None:
            self._report_job(size, started, f"not terminal after {CFG.max_job_wait_s:.0f} s")
            return
        error = None
        if doc["status"] == "failed":
            error = f"job failed: {(doc.get('error') or {}).get('code', doc.get('outcome'))}"
        self._report_job(size, started, error)
        seen = self._fetch_results(job["job_id"])
        if seen != size:
            log.warning("job %s: %d of %d results fetched", job["job_id"], seen, size)

