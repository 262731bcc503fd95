"""``inferq submit``: a JSONL file of inputs submitted as jobs through :class:`Client`,
optionally waited for and written out as one JSONL of results."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import IO, Any

import httpx

from inferq.client import Client
from schemas.states import JobStatus


def default_api_key(state_dir: str | Path = ".inferq") -> str | None:
    """The key ``inferq dev`` wrote, if this directory has one."""
    path = Path(state_dir) / "dev-api-key"
    return path.read_text().strip() or None if path.is_file() else None


def read_inputs(path: str) -> list[dict[str, Any]]:
    """JSONL inputs: each non-blank line an object ``{"text": ..., "id": ...}`` or a string."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise ValueError(f"{path}:{n}: expected a string or an object with a \"text\" string")
        out.append(value)
    return out


async def submit_file(url: str, api_key: str, path: str, *, model: str,
                      priority: str | None = None, timeout_s: float | None = None,
                      wait: bool = False, output: str | None = None,
                      key_prefix: str | None = None, max_items: int = 10_000,
                      transport: httpx.AsyncBaseTransport | None = None,
                      out: IO[str] | None = None, log: IO[str] | None = None) -> int:
    """Submit a JSONL file as one job per ``max_items`` inputs; print the job ids; with
    ``wait`` poll until every job is terminal; with ``output`` write every item's result as
    JSONL (indexes counted across the whole file). Exit status: 0 every job succeeded (some
    items may have failed: see the results), 1 a job failed."""
    out, log = out or sys.stdout, log or sys.stderr
    inputs = read_inputs(path)
    if not inputs:
        raise ValueError(f"{path}: no inputs")
    if key_prefix is None:  # the same file and options give the same jobs (within 24 h)
        digest = hashlib.sha256(json.dumps([model, priority, timeout_s, max_items, inputs],
                                           sort_keys=True).encode()).hexdigest()[:32]
        key_prefix = f"inferq-submit-{digest}"
    starts = list(range(0, len(inputs), max_items))
    async with Client(url, api_key, transport=transport) as c:
        jobs: list[str] = []
        for part, start in enumerate(starts):
            doc = await c.submit(inputs[start:start + max_items], model=model, priority=priority,
                                 timeout_s=timeout_s, idempotency_key=f"{key_prefix}-{part}")
            jobs.append(doc["job_id"])
            print(doc["job_id"], file=out, flush=True)
            print(f"job {doc['job_id']}: {doc['status']} ({doc['counts']['total']} items)",
                  file=log)
        if not wait:
            return 0
        finals = [await c.wait(job_id) for job_id in jobs]
        for d in finals:
            counts = d["counts"]
            error = f" error={d['error']['code']}" if d.get("error") else ""
            print(f"job {d['job_id']}: {d['status']} ({d['outcome']}) succeeded="
                  f"{counts['succeeded']} failed={counts['failed']}{error}", file=log)
        if output and len(jobs) == 1:  # the artifact itself: resumable, digest checked
            m = await c.download_results(jobs[0], output)
            print(f"results: {output} ({m['lines']} lines, sha256 {m['sha256']})", file=log)
        elif output:
            with open(output, "w", encoding="utf-8") as fh:  # noqa: ASYNC230 - a CLI task
                for job_id, start in zip(jobs, starts, strict=True):
                    async for line in c.jsonl(job_id):
                        item = json.loads(line)
                        item["index"] += start
                        fh.write(json.dumps(item, separators=(",", ":")) + "\n")
            print(f"results: {output}", file=log)
        return 0 if all(d["status"] == JobStatus.SUCCEEDED for d in finals) else 1
