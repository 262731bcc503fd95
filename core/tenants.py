"""Tenants and their API keys: a TOML file of tenants, keys stored only as keyed hashes.

```toml
[tenants.acme]
weight = 3                 # fair-share weight in the scheduler
requests_per_s = 50        # submit requests per second per API key (token bucket)
items_per_min = 600000     # items per minute per API key
polls_per_s = 500          # status polls per second per API key (a 304 costs half)
backlog_quota = 200000     # items this tenant may have queued or running at once
api_key_hmac = ["<hex HMAC-SHA256 of the key under the server's pepper>"]
```

``api_key_hmac`` entries are keyed by the server's pepper (``INFERQ_API_KEY_PEPPER``), so a
leaked tenants file alone does not let anyone test guesses offline. Legacy
``api_key_sha256`` entries (plain SHA-256) still load, with a warning. A key is compared only
as a digest, in constant time, and is never logged: what names a key in rate-limit buckets
and logs is a prefix of its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from schemas.subjects import check_token

log = logging.getLogger("inferq.tenants")


class Tenant(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One tenant's fair-share weight, per-key rate limits, backlog quota and key hashes."""

    name: str = ""
    weight: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    requests_per_s: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    items_per_min: Annotated[float, msgspec.Meta(gt=0)] = 1_200_000.0
    polls_per_s: Annotated[float, msgspec.Meta(gt=0)] = 500.0
    backlog_quota: Annotated[int, msgspec.Meta(gt=0)] = 200_000
    api_key_hmac: list[str] = []
    api_key_sha256: list[str] = []
    """Legacy: plain SHA-256 of a key. Still accepted, with a warning at load."""
    webhook_url: str | None = None
    """Default webhook endpoint for jobs submitted without ``webhook`` (both job ends)."""
    webhook_secret: str | None = None
    """Signs this tenant's webhooks (Standard Webhooks, ``whsec_<base64>``); no secret, no
    webhooks. Shared with the tenant's receiver."""


class TenantsFile(msgspec.Struct, forbid_unknown_fields=True):
    """The tenants file's schema: unknown keys are an error (a typo must not go unnoticed)."""

    tenants: dict[str, Tenant] = {}


def hash_key(api_key: str) -> str:
    """An API key's plain SHA-256 in hex: the legacy stored form (``api_key_sha256``)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def hmac_key(api_key: str, pepper: str) -> str:
    """An API key's HMAC-SHA256 under the server's pepper, in hex (``api_key_hmac``)."""
    return hmac.new(pepper.encode(), api_key.encode(), hashlib.sha256).hexdigest()


def _digests(name: str, field: str, entries: list[str]) -> list[str]:
    out = [h.strip().lower() for h in entries]
    if any(len(h) != 64 for h in out):
        raise ValueError(f"tenant {name}: {field} entries are 64 hex chars")
    return out


class TenantDirectory:
    """Looks tenants up by API key (as a digest) or by name."""

    def __init__(self, tenants: dict[str, Tenant], pepper: str | None = None):
        self._pepper = pepper
        self._by_name: dict[str, Tenant] = {}
        self._by_hmac: dict[str, Tenant] = {}
        self._by_sha: dict[str, Tenant] = {}
        for name, t in tenants.items():
            check_token(name, "tenant name")
            t = msgspec.structs.replace(t, name=name)
            self._by_name[name] = t
            for table, field in ((self._by_hmac, "api_key_hmac"),
                                 (self._by_sha, "api_key_sha256")):
                for h in _digests(name, field, getattr(t, field)):
                    if h in table:
                        raise ValueError(f"tenant {name}: an API key hash is listed twice")
                    table[h] = t
        if self._by_sha:
            log.warning("%d API key(s) stored as plain SHA-256 (api_key_sha256): re-hash them "
                        "as api_key_hmac under INFERQ_API_KEY_PEPPER", len(self._by_sha))
        if self._by_hmac and not pepper:
            log.warning("the tenants file lists api_key_hmac keys but INFERQ_API_KEY_PEPPER "
                        "is not set: those keys cannot log in")

    @classmethod
    def load(cls, path: str | Path | None, pepper: str | None = None) -> TenantDirectory:
        """The tenants of a TOML file (none for no path); ValueError naming the file."""
        if not path:
            return cls({}, pepper)
        try:
            data = tomllib.loads(Path(path).read_text())
            parsed = msgspec.convert(data, TenantsFile)
        except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"tenants file {path}: {exc}") from exc
        return cls(parsed.tenants, pepper)

    def identify(self, api_key: str) -> tuple[Tenant, str] | None:
        """The tenant holding this API key and the key's id (a digest prefix: names its
        rate-limit buckets; never the key), or None. Both digests are computed whatever
        matches, and a match is confirmed with a constant-time comparison."""
        keyed = hmac_key(api_key, self._pepper) if self._pepper else ""
        plain = hash_key(api_key)
        for digest, table, field in ((keyed, self._by_hmac, "api_key_hmac"),
                                     (plain, self._by_sha, "api_key_sha256")):
            t = table.get(digest) if digest else None
            if t is not None and any(hmac.compare_digest(digest, h.strip().lower())
                                     for h in getattr(t, field)):
                return t, digest[:16]
        return None

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant holding this API key, or None."""
        found = self.identify(api_key)
        return found[0] if found else None

    def get(self, name: str) -> Tenant | None:
        """The tenant of this name, or None."""
        return self._by_name.get(name)

    def weights(self) -> dict[str, float]:
        """Fair-share weight by tenant name, for the scheduler."""
        return {n: t.weight for n, t in self._by_name.items()}

    def __len__(self) -> int:
        return len(self._by_name)


def write_tenants_file(path: Path, tenants: dict[str, Tenant]) -> None:
    """Writes a tenants file (used by ``inferq dev`` for its dev key)."""
    lines: list[str] = []
    for name, t in tenants.items():
        lines.append(f"[tenants.{name}]")
        for f in ("weight", "requests_per_s", "items_per_min", "polls_per_s", "backlog_quota"):
            lines.append(f"{f} = {getattr(t, f)!r}")
        for f in ("webhook_url", "webhook_secret"):
            if getattr(t, f):
                lines.append(f"{f} = {getattr(t, f)!r}")
        for field in ("api_key_hmac", "api_key_sha256"):
            if getattr(t, field) or (field == "api_key_sha256" and not t.api_key_hmac):
                keys = ", ".join(f'"{h}"' for h in getattr(t, field))
                lines.append(f"{field} = [{keys}]")
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
