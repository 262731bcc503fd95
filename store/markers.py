"""Item markers: the one place that spells and reads the ``r``/``s``/``f`` of a job hash.

Each item that has started has a field ``i:<index>`` in its job's hash (:func:`marker_field`)
whose value is a :class:`Marker`. The Lua scripts write the same letters; everything in
Python goes through this module, so a marker is an :class:`ItemStatus` once it leaves Redis.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from redis.asyncio import Redis

from schemas.states import TERMINAL_ITEM, ItemStatus
from store.redis_errors import redis_errors

__all__ = ["Marker", "decode_marker", "done_items", "encode_marker", "marker_field",
           "marker_index", "result_marker"]

_PREFIX = "i:"


class Marker(enum.StrEnum):
    """An item's marker in its job hash, as the Lua scripts write it."""

    RUNNING = "r"
    SUCCEEDED = "s"
    FAILED = "f"

    @property
    def status(self) -> ItemStatus:
        """The item status this marker stands for."""
        return _STATUS[self]


_STATUS = {Marker.RUNNING: ItemStatus.RUNNING, Marker.SUCCEEDED: ItemStatus.SUCCEEDED,
           Marker.FAILED: ItemStatus.FAILED}
_MARKER = {status: marker for marker, status in _STATUS.items()}


def decode_marker(raw: bytes | str) -> ItemStatus:
    """The item status of a marker read from Redis (bytes or str); a value that is not a
    marker means a corrupt hash, so it raises ValueError rather than guess."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return Marker(text).status
    except ValueError:
        raise ValueError(f"not an item marker: {raw!r}") from None


def encode_marker(status: ItemStatus) -> Marker:
    """The marker of an item status (pending items have none: KeyError)."""
    return _MARKER[ItemStatus(status)]


def result_marker(result: ItemStatus | str) -> Marker:
    """The marker of a terminal item result, given as an :class:`ItemStatus` (or its value,
    as the result store returns it) or as the marker itself (``"s"``/``"f"``)."""
    if result in TERMINAL_ITEM:
        return _MARKER[ItemStatus(result)]
    if result in (Marker.SUCCEEDED, Marker.FAILED):
        return Marker(result)
    raise ValueError(f"item result must be 's' or 'f', got {result!r}")


def marker_field(index: int) -> str:
    """The hash field that holds item ``index``'s marker."""
    return f"{_PREFIX}{index}"


def marker_index(field: bytes | str) -> int | None:
    """The item index of a marker field; None for the job's other fields."""
    name = field.decode() if isinstance(field, bytes) else field
    return int(name[len(_PREFIX):]) if name.startswith(_PREFIX) else None


async def done_items(redis: Redis, key: str, indexes: Sequence[int]) -> set[int]:
    """The indexes among ``indexes`` whose marker says succeeded or failed (one HMGET), for
    a runner that resumes a redelivered batch without redoing what a predecessor finished."""
    if not indexes:
        return set()
    with redis_errors("done_items"):
        marks = await redis.hmget(key, [marker_field(i) for i in indexes])
    return {i for i, m in zip(indexes, marks, strict=True)
            if m is not None and decode_marker(m) in TERMINAL_ITEM}
