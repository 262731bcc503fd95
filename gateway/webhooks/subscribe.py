"""Which webhook a submission gets: its own ``webhook``, else its tenant's default endpoint
(``webhook_url`` in the tenants file), else none; checked before any work is done."""

from __future__ import annotations

from dataclasses import dataclass

from core.tenants import Tenant
from gateway import errors as E
from gateway.webhooks.targets import TargetPolicy, TargetRefused
from schemas.api import FieldError
from schemas.webhooks import ALL_EVENTS, WebhookEvent, WebhookRequest
from store.webhooks import WebhookStore


@dataclass(frozen=True)
class Webhook:
    """A job's webhook as it will be recorded."""

    url: str
    events: tuple[WebhookEvent, ...]


class Subscriptions:
    """Resolves and checks a submission's webhook, and records it before the job is queued."""

    def __init__(self, policy: TargetPolicy, store: WebhookStore):
        self._policy = policy
        self._store = store

    def resolve(self, tenant: Tenant, request: WebhookRequest | None) -> Webhook | None:
        """The submission's webhook; 400 (pointer ``/webhook/url``) for a URL the policy
        refuses, or when the tenant has no ``webhook_secret`` to sign with."""
        if request is None:
            if not tenant.webhook_url:
                return None
            url, events, pointer = tenant.webhook_url, ALL_EVENTS, ""
        else:
            url, pointer = request.url, "/webhook/url"
            events = tuple(dict.fromkeys(request.events or ALL_EVENTS))
        if not tenant.webhook_secret:
            raise E.InvalidRequest(
                "webhooks are signed with the tenant's webhook secret, and this tenant has "
                "none (webhook_secret in the tenants file)",
                errors=[FieldError("/webhook", "no webhook secret for this tenant")])
        try:
            self._policy.check_url(url)
        except TargetRefused as exc:
            where = pointer or "/webhook"
            raise E.InvalidRequest(f"webhook URL refused: {exc}",
                                   errors=[FieldError(where, str(exc))]) from exc
        return Webhook(url, events)

    async def record(self, job_id: str, tenant: str, webhook: Webhook | None,
                     expires_at: float) -> None:
        """Write the job's subscription (idempotent); before the job's hash exists, so any
        end of the job sees it."""
        if webhook is not None:
            await self._store.subscribe(job_id, tenant, webhook.url, webhook.events,
                                        expires_at)
