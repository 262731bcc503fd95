"""NATS JetStream: connecting, provisioning streams and consumers, and error translation.

Streams and consumers are created or updated idempotently by whichever process needs them,
so any role can start first. Where each role has its own NATS user with least permissions
(SECURITY.md), only the admin user manages streams: ``provision`` (``inferq bus provision``)
runs first, and the roles find the streams in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections import deque

from nats import errors as nerr
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as jsapi
from nats.js import errors as jserr

from core.config import Settings
from core.tls import TlsFiles
from schemas import subjects

log = logging.getLogger("inferq.bus")


class BusError(Exception):
    """Root of bus errors; ``retryable`` says whether waiting and retrying can help."""

    retryable = True


class BusUnavailable(BusError):
    """NATS could not be reached at all (start-up): retry once the server is back."""


async def hint(nc: NATS, subject: str) -> None:
    """Publish a wake-up hint on core NATS (no stream captures ``inferq.signal.>``): fire and
    forget, since every receiver also polls — a lost hint costs a poll interval, never
    correctness."""
    try:
        await nc.publish(subject)
    except Exception:  # a lost hint is harmless
        log.debug("hint %s not sent", subject, exc_info=True)


PERMISSION_DENIED = "permissions violation"
"""What nats-server's ``-ERR`` says (nats-py lower-cases it) when a user publishes or
subscribes outside its permissions. The server drops the message or subscription and keeps
the connection, so a denied request only times out; the error arrives beside it."""
_REFUSED_LOGIN = "authorization violation"

_denials: weakref.WeakKeyDictionary[NATS, deque[str]] = weakref.WeakKeyDictionary()


def denials(nc: NATS) -> list[str]:
    """The server's recent permission refusals on this connection, oldest first (at most 32):
    what a timed-out request was refused for, and what the permission tests look at."""
    return list(_denials.get(nc, ()))


def inbox_prefix(role: str) -> str:
    """The reply subjects of one role's requests (``_INBOX.<role>.…``): with per-role users,
    each may subscribe only to its own, so no role can read another's replies (a runner's
    pulled batches arrive on its inbox)."""
    return f"_INBOX.{subjects.check_token(role, 'role')}"


async def connect_role(settings: Settings, role: str) -> NATS:
    """The connection of one role (gateway, scheduler, runner, admin) as ``settings`` says:
    its NATS user, TLS when configured, and its own inbox prefix."""
    tls = TlsFiles(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)
    return await connect(settings.nats_url, f"inferq-{role}", user=settings.nats_user,
                         password=settings.nats_password,
                         tls=tls.context() if tls.enabled else None,
                         inbox=inbox_prefix(role))


async def connect(url: str, name: str, *, user: str | None = None, password: str | None = None,
                  tls: ssl.SSLContext | None = None, inbox: str = "_INBOX") -> NATS:
    """A connection that reconnects forever (clients reconnect on their own after an outage).

    ``user``/``password`` override the URL's credentials; ``tls`` makes every server a TLS
    one (the URL's scheme may stay ``nats://``). A refused login is not retried: it raises
    ``BusUnavailable`` with the server's words."""

    async def on_disconnect() -> None:
        if not nc.is_closed and not nc.is_draining:
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    async def on_error(exc: Exception) -> None:
        text = str(exc).lower()
        if PERMISSION_DENIED in text:
            _denials.setdefault(nc, deque(maxlen=32)).append(str(exc))
            log.warning("nats refused this user: %s", exc)
        elif not started and (_REFUSED_LOGIN in text or isinstance(exc, ssl.SSLError)):
            # The first connect retries forever (NATS may come up after us), but waiting
            # cannot fix a wrong password or certificate: fail the start-up, saying why.
            raise BusUnavailable(f"NATS refused this process: {exc}")
        else:
            log.debug("nats error: %s", exc)

    nc = NATS()
    started = False
    auth: dict = {"user": user, "password": password} if user else {}
    if tls is not None:
        auth["tls"] = tls
    try:
        await nc.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=name,
            inbox_prefix=inbox,
            **auth,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=5,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
    except Exception as exc:
        with contextlib.suppress(Exception):  # a half-open TLS socket may never finish closing
            await asyncio.wait_for(nc.close(), 1.0)
        raise BusUnavailable(f"cannot connect to NATS at {_safe(url)}: {exc}") from exc
    started = True
    return nc


def _safe(url: str) -> str:
    """``url`` without the credentials it may carry (it goes into messages and logs)."""
    return ",".join(u.strip().rpartition("@")[2] for u in url.split(","))


def _stream_configs(replicas: int, dlq_max_age_s: float) -> list[jsapi.StreamConfig]:
    common = dict(storage=jsapi.StorageType.FILE, num_replicas=replicas)
    return [
        jsapi.StreamConfig(
            name=subjects.JOBS_STREAM,
            subjects=[f"{subjects.JOBS_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
            max_msg_size=4 * 1024 * 1024,
            **common,
        ),
        jsapi.StreamConfig(
            name=subjects.BATCHES_STREAM,
            subjects=[f"{subjects.BATCHES_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.WORK_QUEUE,
            max_msg_size=8 * 1024 * 1024,
            **common,
        ),
        jsapi.StreamConfig(
            name=subjects.DLQ_STREAM,
            subjects=[f"{subjects.DLQ_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.LIMITS,
            max_age=dlq_max_age_s,
            **common,
        ),
    ]


async def provision_streams(js: JetStreamContext, *, replicas: int = 1,
                            dlq_max_age_s: float = 7 * 86400) -> None:
    """Make sure the JOBS, BATCHES and DLQ streams exist with this configuration.

    Each stream is looked up first and created or updated only when missing or different,
    so a role whose NATS user may not manage streams (per-role permissions: an admin
    provisions them, see :func:`provision`) starts against existing streams. A stream that
    is missing and cannot be created is an error; one that differs and cannot be updated is
    used as it is, with a warning."""
    for cfg in _stream_configs(replicas, dlq_max_age_s):
        try:
            info = await js.stream_info(cfg.name)
        except jserr.NotFoundError:
            info = None
        except nerr.TimeoutError as exc:
            raise BusError(f"no answer to the info of stream {cfg.name}: NATS is overloaded, "
                           f"or this NATS user may not read it (permission denied?)") from exc
        if info is not None and _same(info.config, cfg):
            continue
        try:
            if info is None:
                await _add_or_update(js, cfg)
            else:
                await js.update_stream(cfg)
        except nerr.TimeoutError as exc:  # no reply: this user may not manage streams
            if info is None:
                raise BusError(
                    f"stream {cfg.name} does not exist and this NATS user could not create "
                    f"it (permission denied?); create the streams as the admin user: "
                    f"inferq bus provision") from exc
            log.warning("stream %s differs from this process's configuration and this NATS "
                        "user could not update it (permission denied?); using it as it is",
                        cfg.name)
        log.debug("stream %s ready", cfg.name)


async def _add_or_update(js: JetStreamContext, cfg: jsapi.StreamConfig) -> None:
    try:
        await js.add_stream(cfg)
    except jserr.BadRequestError as exc:
        # Created meanwhile with another configuration: update what may be updated.
        if exc.err_code in (10058, 10065):  # stream name in use / subjects overlap
            await js.update_stream(cfg)
        else:
            raise


def _same(have: jsapi.StreamConfig, want: jsapi.StreamConfig) -> bool:
    """Whether ``have`` already has every setting ``want`` states (unset ones are the
    server's defaults and not compared)."""
    for name in ("retention", "storage", "num_replicas", "max_msg_size"):
        if getattr(have, name) != getattr(want, name):
            return False
    for name in ("duplicate_window", "max_age"):
        wanted = getattr(want, name)
        if wanted and abs((getattr(have, name) or 0) - wanted) > 1e-3:
            return False
    return sorted(have.subjects or []) == sorted(want.subjects or [])


async def provision(settings: Settings) -> None:
    """Create or update the streams as the NATS admin (``settings``' user): the step that
    comes before the roles where their users may not manage streams (``inferq bus
    provision``; ``inferq dev`` runs it itself). The replies come to the user's own inbox
    prefix (``_INBOX.<user>``), so a role's user that tries gets a clear refusal."""
    try:
        inbox_role = subjects.check_token(settings.nats_user or "admin", "NATS user")
    except ValueError:  # a name that cannot be a subject token: the admin's inbox then
        inbox_role = "admin"
    nc = await connect_role(settings, inbox_role)
    try:
        await provision_streams(nc.jetstream(), replicas=settings.stream_replicas,
                                dlq_max_age_s=settings.result_ttl_s)
    finally:
        await nc.close()


async def ensure_consumer(js: JetStreamContext, stream: str, cfg: jsapi.ConsumerConfig) -> None:
    """Create a durable pull consumer, or update it in place (the server's create is an upsert
    for the fields that may change, such as AckWait and MaxAckPending)."""
    await js.add_consumer(stream, cfg)
