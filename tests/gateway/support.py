"""Helpers shared by the gateway and API tests: a running service with chosen settings and
tenant limits, and checks of the one error envelope."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from core.config import Settings
from core.tenants import Tenant, hash_key, write_tenants_file
from tests.e2e.harness import KEYS, Service

ENVELOPE = {"type", "title", "status", "detail", "code", "retryable", "request_id"}
OPTIONAL = {"retry_after_s", "errors"}


def tenants_with(path: Path, **limits: dict[str, Any]) -> str:
    """A tenants file for the harness's keys; ``limits[tenant]`` overrides Tenant fields."""
    write_tenants_file(path, {
        name: Tenant(name=name, api_key_sha256=[hash_key(key)], **limits.get(name, {}))
        for name, key in KEYS.items()})
    return str(path)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, runners: int = 0, schedulers: int = 0,
                  **overrides: Any) -> AsyncIterator[Service]:
    """The service with ``overrides`` applied to its settings; no runner unless asked."""
    svc = Service(dataclasses.replace(settings, **overrides))
    await svc.start(schedulers=schedulers, runners=runners)
    try:
        yield svc
    finally:
        await svc.stop()


def services(svc: Service):
    """The gateway's GatewayServices (the app runs in this event loop)."""
    return svc.gateway._server.config.app.state.services


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is the one error envelope, with this status (and code)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert ENVELOPE <= set(body) <= ENVELOPE | OPTIONAL, body
    assert body["status"] == status
    assert isinstance(body["retryable"], bool) and body["request_id"]
    assert body["type"].endswith("/" + body["code"])
    if code is not None:
        assert body["code"] == code, body
    if body["retryable"] and status in (429, 503):
        assert int(r.headers["retry-after"]) >= 1
    for e in body.get("errors") or []:
        assert set(e) == {"pointer", "detail"}, e
    return body
