"""Tenants and their API keys: a TOML file of tenants, keys stored only as SHA-256 hashes.

```toml
[tenants.acme]
weight = 3                 # fair-share weight in the scheduler
requests_per_s = 50        # submit requests per second per API key (token bucket)
items_per_min = 600000     # items per minute per API key
polls_per_s = 500          # status polls per second per API key (a 304 costs half)
backlog_quota = 200000     # items this tenant may have queued or running at once
api_key_sha256 = ["<hex sha256 of the key>"]
```
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from schemas.subjects import check_token


class Tenant(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One tenant's fair-share weight, per-key rate limits, backlog quota and key hashes."""

    name: str = ""
    weight: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    requests_per_s: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    items_per_min: Annotated[float, msgspec.Meta(gt=0)] = 1_200_000.0
    polls_per_s: Annotated[float, msgspec.Meta(gt=0)] = 500.0
    backlog_quota: Annotated[int, msgspec.Meta(gt=0)] = 200_000
    api_key_sha256: list[str] = []


class TenantsFile(msgspec.Struct, forbid_unknown_fields=True):
    """The tenants file's schema: unknown keys are an error (a typo must not go unnoticed)."""

    tenants: dict[str, Tenant] = {}


def hash_key(api_key: str) -> str:
    """An API key's SHA-256 in hex: the only form in which keys are stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantDirectory:
    """Looks tenants up by API key (hashed) or by name."""

    def __init__(self, tenants: dict[str, Tenant]):
        self._by_name: dict[str, Tenant] = {}
        self._by_hash: dict[str, Tenant] = {}
        for name, t in tenants.items():
            check_token(name, "tenant name")
            t = msgspec.structs.replace(t, name=name)
            self._by_name[name] = t
            for h in t.api_key_sha256:
                h = h.strip().lower()
                if len(h) != 64:
                    raise ValueError(f"tenant {name}: api_key_sha256 entries are 64 hex chars")
                if h in self._by_hash:
                    raise ValueError(f"tenant {name}: an API key hash is listed twice")
                self._by_hash[h] = t

    @classmethod
    def load(cls, path: str | Path | None) -> TenantDirectory:
        """The tenants of a TOML file (none for no path); ValueError naming the file."""
        if not path:
            return cls({})
        try:
            data = tomllib.loads(Path(path).read_text())
            parsed = msgspec.convert(data, TenantsFile)
        except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"tenants file {path}: {exc}") from exc
        return cls(parsed.tenants)

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant holding this API key, or None."""
        digest = hash_key(api_key)
        t = self._by_hash.get(digest)
        # Constant-time confirmation of the match (the dict lookup is on a hash already).
        if t is not None and any(hmac.compare_digest(digest, h) for h in t.api_key_sha256):
            return t
        return None

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
        keys = ", ".join(f'"{h}"' for h in t.api_key_sha256)
        lines.append(f"api_key_sha256 = [{keys}]")
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
