"""Who is calling: ``Authorization: Bearer <key>`` to a tenant and the key's id, or 401."""

from __future__ import annotations

from core.tenants import Tenant, TenantDirectory
from gateway import errors as E


def identify(tenants: TenantDirectory, authorization: str) -> tuple[Tenant, str]:
    """The tenant holding the bearer key and the key's id (a digest prefix that names the
    key's buckets; the key itself goes nowhere). Unauthenticated if the header is missing,
    not a bearer key, or names no key — never echoing the key."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise E.Unauthenticated("send `Authorization: Bearer <api key>`")
    found = tenants.identify(key)
    if found is None:
        raise E.Unauthenticated("unknown API key")
    return found
