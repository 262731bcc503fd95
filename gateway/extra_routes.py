"""Routes beyond the job lifecycle: a job's webhook deliveries and the tenant's usage. Same
authentication, admission (a read: the polls bucket) and error envelope as gateway/routes.py;
their own OPTIONS handlers."""

from __future__ import annotations

from litestar import Request, Response

from gateway.routes import (
    WITH_AUTH,
    JobId,
    caller,
    get_and_head,
    options_handlers,
    problems,
    services,
)
from gateway.webhooks.dispatcher import iso, webhook_id
from schemas.webhooks import DeliveryState, WebhookDeliveries
from store.webhooks import WebhookStore


async def deliveries_doc(hooks: WebhookStore, job_id: str) -> WebhookDeliveries:
    """The job's webhook, its state and every recorded attempt."""
    sub = await hooks.get(job_id)
    if sub is None:
        return WebhookDeliveries(job_id=job_id, state=DeliveryState.NONE)
    pending = sub.state == DeliveryState.PENDING and sub.next_attempt_at is not None
    return WebhookDeliveries(
        job_id=job_id, state=sub.state, url=sub.url, events=sub.events,
        webhook_id=webhook_id(job_id),
        next_attempt_at=iso(sub.next_attempt_at) if pending else None,
        attempts=await hooks.attempts(job_id))


@get_and_head("/v1/jobs/{job_id:str}/webhook-deliveries",
              summary="The job's webhook: its state and every delivery attempt",
              responses=problems(400, 401, 404, 429, 503), **WITH_AUTH)
async def get_webhook_deliveries(request: Request, job_id: JobId
                                 ) -> Response[WebhookDeliveries]:
    """``state`` ``none`` when the job has no webhook; attempts oldest first."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    await svc.reader.owned_job(tenant.name, job_id)
    return Response(await deliveries_doc(svc.webhooks, job_id), headers=headers)


_HANDLERS = [get_webhook_deliveries]
EXTRA_ROUTES = options_handlers(_HANDLERS) + _HANDLERS
