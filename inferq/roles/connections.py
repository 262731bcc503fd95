"""Closing a role's NATS connection politely (Redis is opened by ``store.redis_client``)."""

from __future__ import annotations

from nats.aio.client import Client as NATS


async def close_nats(nc: NATS) -> None:
    """Flush what we published, then close. (``drain`` would wait out its timeout on
    subscriptions with a pull request in flight; every ack we owe was sent synchronously.)"""
    if nc.is_connected:
        try:
            await nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
    try:
        await nc.close()
    except OSError:  # the server went away first: there is nothing left to close
        pass
