"""Downloading a terminal job's ``results.jsonl``: resumable and checked.

The bytes go to ``<dest>.part`` with the artifact's ETag beside it (``<dest>.part.etag``); a
call that finds them asks only for the rest (``Range`` + ``If-Range``: a server whose artifact
changed sends it all again), a transfer cut midway resumes from what arrived, and the whole
is checked against the manifest's SHA-256 (and the ``Repr-Digest`` sent with it) before it
is moved to ``dest``. ``Client.download_results`` is the way in.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from inferq.client import InferqError

if TYPE_CHECKING:
    from inferq.client import Client


async def download_results(client: Client, job_id: str, dest: str | Path) -> dict[str, Any]:
    """Download a terminal job's ``results.jsonl`` to ``dest``, resuming a partial
    ``<dest>.part`` left by an interrupted call, and check it against the manifest's length
    and SHA-256; returns the manifest. A bad copy is deleted and raises ``InferqError``."""
    dest = Path(dest)
    manifest = (await client.request("GET", f"/v1/jobs/{job_id}/results/manifest")).json()
    attempt, digest = 0, ""
    while True:
        offset, etag = _partial(dest)
        headers = {"Range": f"bytes={offset}-", "If-Range": etag} \
            if 0 < offset < manifest["bytes"] else {}
        client.attempts += 1
        try:
            async with client._http.stream("GET", f"/v1/jobs/{job_id}/results.jsonl",
                                           headers=headers) as r:
                if r.status_code not in (200, 206):
                    await r.aread()
                    raise client._error(r)
                digest = r.headers.get("repr-digest", "")
                with _part_writer(dest, r.headers.get("etag", ""),
                                  append=r.status_code == 206) as fh:
                    async for piece in r.aiter_bytes():
                        fh.write(piece)
            break
        except httpx.TransportError:  # cut midway: resume from what arrived
            attempt += 1
            if attempt >= client.retry_policy.max_attempts:
                raise
            await client._sleep(client.retry_policy.delay(attempt - 1, None, client._rng))
    if not _verified(dest, manifest["sha256"], digest):
        raise InferqError(0, "digest_mismatch",
                          f"results of {job_id} do not match their SHA-256; download again")
    return manifest


def _partial(dest: Path) -> tuple[int, str]:
    """Bytes already downloaded to ``<dest>.part`` and the ETag they came with."""
    part, tag = Path(f"{dest}.part"), Path(f"{dest}.part.etag")
    if part.exists() and tag.exists():
        return part.stat().st_size, tag.read_text()
    return 0, ""


def _part_writer(dest: Path, etag: str, *, append: bool) -> IO[bytes]:
    """``<dest>.part`` opened to append (206) or rewrite (200), its ETag saved beside it."""
    Path(f"{dest}.part.etag").write_text(etag)
    return open(f"{dest}.part", "ab" if append else "wb")


def _verified(dest: Path, sha256_hex: str, repr_digest: str) -> bool:
    """Move ``<dest>.part`` to ``dest`` if its SHA-256 is the manifest's (and the
    Repr-Digest's); else delete it."""
    part, tag = Path(f"{dest}.part"), Path(f"{dest}.part.etag")
    sha = hashlib.sha256()
    with open(part, "rb") as fh:
        while piece := fh.read(1 << 20):
            sha.update(piece)
    expected = "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode() + ":"
    tag.unlink(missing_ok=True)
    if sha.hexdigest() != sha256_hex or (repr_digest and repr_digest != expected):
        part.unlink(missing_ok=True)
        return False
    part.replace(dest)
    return True
