"""``inferq submit``: a JSONL file of inputs submitted as one job through :class:`Client` —
inline up to ``max_items`` inputs, else uploaded (``POST /v1/files``) and submitted as a job
from the file (up to the server's 1,000,000 lines) — optionally waited for and its results
downloaded (resumable, SHA-256 checked)."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from inferq.client import Client
from schemas.states import JobStatus


def default_api_key(state_dir: str | Path = ".inferq") -> str | None:
    """The key ``inferq dev`` wrote, if this directory has one."""
    path = Path(state_dir) / "dev-api-key"
    return path.read_text().strip() or None if path.is_file() else None


def _source_lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from sys.stdin
        return
    with open(path, encoding="utf-8") as fh:
        yield from fh


def stage_inputs(path: str, dest: Path) -> tuple[int, str]:
    """Check the JSONL inputs (each non-blank line an object ``{"text": ..., "id": ...}`` or a
    string) line by line and write them to ``dest`` one compact JSON line each, blank lines
    dropped (what ``POST /v1/files`` takes); the number of inputs and their SHA-256."""
    count, sha = 0, hashlib.sha256()
    with open(dest, "w", encoding="utf-8") as out:
        for n, line in enumerate(_source_lines(path), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
            if isinstance(value, str):
                value = {"text": value}
            if not isinstance(value, dict) or not isinstance(value.get("text"), str):
                raise ValueError(
                    f"{path}:{n}: expected a string or an object with a \"text\" string")
            staged = json.dumps(value, separators=(",", ":")) + "\n"
            out.write(staged)
            sha.update(staged.encode())
            count += 1
    return count, sha.hexdigest()


async def submit_file(url: str, api_key: str, path: str, *, model: str,
                      priority: str | None = None, timeout_s: float | None = None,
                      wait: bool = False, output: str | None = None,
                      idempotency_key: str | None = None, max_items: int = 10_000,
                      transport: httpx.AsyncBaseTransport | None = None,
                      out: IO[str] | None = None, log: IO[str] | None = None) -> int:
    """Submit a JSONL file as one job: inline up to ``max_items`` inputs, else uploaded and
    submitted as a job from the file; print its id; with ``wait`` poll until it is terminal;
    with ``output`` download every item's result there. Exit status: 0 the job succeeded
    (some items may have failed: see the results), 1 it failed."""
    out, log = out or sys.stdout, log or sys.stderr
    with tempfile.TemporaryDirectory(prefix="inferq-submit-") as tmp:
        staged = Path(tmp) / "inputs.jsonl"
        count, digest = stage_inputs(path, staged)
        if not count:
            raise ValueError(f"{path}: no inputs")
        inline = count <= max_items
        # The same file and options give the same job (within the keys' 24 h), even though
        # a second run uploads the file again: the server binds the key to its content.
        key = idempotency_key or "inferq-submit-" + hashlib.sha256(json.dumps(
            [model, priority, timeout_s, inline, digest]).encode()).hexdigest()[:32]
        async with Client(url, api_key, transport=transport) as c:
            if inline:
                inputs = [json.loads(line) for line in staged.read_text("utf-8").splitlines()]
                doc = await c.submit(inputs, model=model, priority=priority,
                                     timeout_s=timeout_s, idempotency_key=key)
            else:
                f = await c.upload_file(staged)
                print(f"uploaded {f['file_id']} ({f['lines']} lines, {f['bytes']} bytes)",
                      file=log)
                doc = await c.submit_file_job(f["file_id"], model=model, priority=priority,
                                              timeout_s=timeout_s, idempotency_key=key)
            job_id = doc["job_id"]
            print(job_id, file=out, flush=True)
            print(f"job {job_id}: {doc['status']} ({doc['counts']['total']} items)", file=log)
            if not wait:
                return 0
            done = await c.wait(job_id)
            counts = done["counts"]
            error = f" error={done['error']['code']}" if done.get("error") else ""
            print(f"job {job_id}: {done['status']} ({done['outcome']}) succeeded="
                  f"{counts['succeeded']} failed={counts['failed']}{error}", file=log)
            if output:  # the artifact itself: resumable, digest checked
                m = await c.download_results(job_id, output)
                print(f"results: {output} ({m['lines']} lines, sha256 {m['sha256']})",
                      file=log)
            return 0 if done["status"] == JobStatus.SUCCEEDED else 1
