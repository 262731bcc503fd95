"""Redis failures translated, in one place, into the cache's typed exceptions.

Callers branch on ``retryable``: a retryable error means "Redis is down, loading, failing over
or full — nak and try again later"; anything else is a bug or a misconfiguration.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import ClassVar

import redis.exceptions as rexc
from redis.asyncio import Redis

from schemas.errors import ErrorCode

log = logging.getLogger(__name__)


class CacheError(Exception):
    """Root of the Redis job-state cache's errors."""

    code: ClassVar[str] = ErrorCode.INTERNAL_ERROR.value
    retryable: ClassVar[bool] = False


class CacheUnavailable(CacheError):
    """Redis cannot serve the command now (down, timing out, loading, read-only, out of memory)."""

    code = ErrorCode.UNAVAILABLE.value
    retryable = True


class CacheMisconfigured(CacheError):
    """Redis is set up in a way that breaks the cache's guarantees; an operator must fix it."""


class CacheRejected(CacheError):
    """Redis or one of our scripts refused the command: a bug or a corrupt key, not transient."""


class CacheMiss(CacheError):
    """The job's hash is missing (expired, evicted or lost): rebuild it with ``restore`` and retry.

    Retryable because it is the caller's cue to restore, never an answer to pass on.
    """

    code = "cache_miss"
    retryable = True

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is not in the Redis cache")
        self.job_id = job_id


# Error replies that mean "not now" rather than "never": memory full under noeviction, a slow
# script, a replica loading or promoted, a cluster failing over.
_TRANSIENT_REPLIES = ("OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN",
                      "CLUSTERDOWN", "NOREPLICAS")


@contextlib.contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Run Redis calls, re-raising redis-py's exceptions as ``CacheError`` subclasses.

    redis-py's Script object already reloads a script after NOSCRIPT (a restarted server).
    """
    try:
        yield
    except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
        raise CacheMisconfigured(f"redis {operation}: {exc}") from exc
    except (rexc.ConnectionError, rexc.TimeoutError) as exc:  # BusyLoadingError included
        raise CacheUnavailable(f"redis {operation}: {exc}") from exc
    except rexc.ResponseError as exc:
        if str(exc).upper().startswith(_TRANSIENT_REPLIES):
            raise CacheUnavailable(f"redis {operation}: {exc}") from exc
        raise CacheRejected(f"redis {operation}: {exc}") from exc
    except rexc.RedisError as exc:
        raise CacheRejected(f"redis {operation}: {exc}") from exc


async def check_noeviction(redis: Redis) -> None:
    """Start-up check: Redis must never evict keys, or counters vanish mid-job.

    Raises ``CacheMisconfigured`` for any other ``maxmemory-policy``. Where CONFIG is disabled
    (managed Redis) the policy cannot be read: log a warning and go on.
    """
    try:
        with redis_errors("CONFIG GET maxmemory-policy"):
            reply = await redis.config_get("maxmemory-policy")
    except CacheRejected as exc:
        log.warning(
            "cannot read Redis maxmemory-policy (%s); make sure it is 'noeviction': an evicted "
            "job hash loses its exactly-once counts", exc,
        )
        return
    values = {_text(k): _text(v) for k, v in reply.items()}
    policy = values.get("maxmemory-policy")
    if policy is None:
        log.warning("Redis did not report maxmemory-policy; make sure it is 'noeviction'")
        return
    if policy != "noeviction":
        raise CacheMisconfigured(
            f"Redis maxmemory-policy is {policy!r}; set it to 'noeviction' (redis.conf "
            "'maxmemory-policy noeviction' or CONFIG SET maxmemory-policy noeviction). inferq "
            "keeps exactly-once item counters and markers in Redis: an evicted job hash loses "
            "them, and its items would be counted again or never. With noeviction a full Redis "
            "refuses writes instead, which inferq retries."
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
