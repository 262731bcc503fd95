"""Load-test settings from ``INFERQ_LOADTEST_*`` variables, and the two safety rails.

The rails: a load goes to a loopback address only (``check_loopback``), and every run has a hard
deadline (``max_run_s``) even when ``-t`` is forgotten. Both exist so that a mistyped ``--host``
or a missing flag cannot turn a capacity probe into an unbounded load on someone's service.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MAX_ITEMS_PER_JOB = 10_000
"""The API's per-job item limit (DESIGN.md); larger mixes would only measure 413s."""


@dataclass(frozen=True)
class LoadConfig:
    mix: tuple[tuple[int, int], ...] = ((1, 70), (32, 25), (1000, 5))
    """Job sizes and their weights, ``INFERQ_LOADTEST_MIX="1:70,32:25,1000:5"``."""
    model: str = "minilm"
    """Model (alias or pinned ``name@version``) every job asks for."""
    interactive_max_items: int = 1
    """Jobs up to this many items go as ``priority: interactive``, larger ones as ``batch``."""
    page_limit: int = 500
    """Results page size when fetching (the API allows 1..1000)."""
    think_s: tuple[float, float] = (1.0, 5.0)
    """Pause between one job's results and the next submit, ``INFERQ_LOADTEST_THINK="1,5"``."""
    max_job_wait_s: float = 600.0
    """Give up polling a job after this long and count it as a failure (bounded users)."""
    max_run_s: float = 900.0
    """Hard deadline of a whole run, whatever ``-t`` says (at most one hour)."""
    submit_attempts: int = 8
    """Tries of one submit (same Idempotency-Key) through 429/503/409 and connection errors."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LoadConfig:
        e = os.environ if env is None else env
        d = cls()
        mix = _parse_mix(e["INFERQ_LOADTEST_MIX"]) if e.get("INFERQ_LOADTEST_MIX") else d.mix
        think = tuple(float(x) for x in e.get("INFERQ_LOADTEST_THINK", "1,5").split(","))
        cfg = cls(
            mix=mix,
            model=e.get("INFERQ_LOADTEST_MODEL", d.model),
            interactive_max_items=int(e.get("INFERQ_LOADTEST_INTERACTIVE_MAX",
                                            d.interactive_max_items)),
            page_limit=int(e.get("INFERQ_LOADTEST_PAGE_LIMIT", d.page_limit)),
            think_s=(think[0], think[-1]),
            max_job_wait_s=float(e.get("INFERQ_LOADTEST_MAX_JOB_WAIT_S", d.max_job_wait_s)),
            max_run_s=float(e.get("INFERQ_LOADTEST_MAX_SECONDS", d.max_run_s)),
        )
        if not 1 <= cfg.page_limit <= 1000:
            raise ValueError("INFERQ_LOADTEST_PAGE_LIMIT must be within 1..1000")
        if not 0 < cfg.max_run_s <= 3600:
            raise ValueError("INFERQ_LOADTEST_MAX_SECONDS must be within (0, 3600]")
        if not 0 <= cfg.think_s[0] <= cfg.think_s[1]:
            raise ValueError("INFERQ_LOADTEST_THINK must be 'min,max' seconds with min <= max")
        return cfg


def _parse_mix(raw: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for part in raw.split(","):
        size, _, weight = part.strip().partition(":")
        pairs.append((int(size), int(weight or 1)))
    if not pairs or any(not 1 <= s <= MAX_ITEMS_PER_JOB or w < 0 for s, w in pairs):
        raise ValueError(f"INFERQ_LOADTEST_MIX={raw!r}: want 'size:weight,...', sizes 1..10000")
    if sum(w for _, w in pairs) <= 0:
        raise ValueError(f"INFERQ_LOADTEST_MIX={raw!r}: weights sum to zero")
    return tuple(pairs)


def api_keys(env: dict[str, str] | None = None) -> list[str]:
    """One key per simulated tenant: ``INFERQ_LOADTEST_KEYS`` (comma separated), else the key
    ``inferq dev`` wrote to ``INFERQ_LOADTEST_KEY_FILE`` (default ``.inferq/dev-api-key``)."""
    e = os.environ if env is None else env
    keys = [k.strip() for k in e.get("INFERQ_LOADTEST_KEYS", "").split(",") if k.strip()]
    if keys:
        return keys
    path = Path(e.get("INFERQ_LOADTEST_KEY_FILE", ".inferq/dev-api-key"))
    if path.is_file() and path.read_text().strip():
        return [path.read_text().strip()]
    raise RuntimeError("set INFERQ_LOADTEST_KEYS=key1,key2,... (one per simulated tenant), or "
                       f"run `inferq dev` here so that {path} holds its key")


def check_loopback(host_url: str | None) -> str | None:
    """None when ``host_url`` names only loopback addresses, else why the run is refused."""
    if not host_url:
        return "no target: pass --host http://127.0.0.1:8000"
    host = urlsplit(host_url).hostname
    if not host:
        return f"cannot read a host name from {host_url!r}"
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc}"
    outside = sorted(a for a in addrs if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if outside:
        return (f"{host!r} resolves to non-loopback {outside}: this load test only targets a "
                "service on this machine (e.g. `inferq dev`)")
    return None
