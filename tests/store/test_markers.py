"""Item markers: one codec between the letters in a job hash and ItemStatus, and the reads
that go through it (a runner's resume check, a repair's scan of every item)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from schemas.states import ItemStatus
from store.jobstate import JobStateCache
from store.markers import Marker, decode_marker, done_items, encode_marker, result_marker
from tests.store.jobstate_helpers import T0, job


@pytest.mark.parametrize(("raw", "status"), [
    (b"r", ItemStatus.RUNNING), ("r", ItemStatus.RUNNING),
    (b"s", ItemStatus.SUCCEEDED), ("s", ItemStatus.SUCCEEDED),
    (b"f", ItemStatus.FAILED), ("f", ItemStatus.FAILED),
])
def test_markers_decode_to_item_statuses_and_back(raw: bytes | str, status: ItemStatus) -> None:
    assert decode_marker(raw) is status
    assert encode_marker(status) == (raw.decode() if isinstance(raw, bytes) else raw)


@pytest.mark.parametrize("raw", [b"x", "", "succeeded", b"S"])
def test_anything_else_in_a_marker_field_is_a_corrupt_hash(raw: bytes | str) -> None:
    with pytest.raises(ValueError, match="not an item marker"):
        decode_marker(raw)


def test_a_pending_item_has_no_marker() -> None:
    with pytest.raises(KeyError):
        encode_marker(ItemStatus.PENDING)


@pytest.mark.parametrize(("result", "marker"), [
    ("s", Marker.SUCCEEDED), ("f", Marker.FAILED),
    (ItemStatus.SUCCEEDED, Marker.SUCCEEDED), (ItemStatus.FAILED, Marker.FAILED),
    ("succeeded", Marker.SUCCEEDED), ("failed", Marker.FAILED),  # as the store returns them
])
def test_terminal_results_become_terminal_markers(result: str, marker: Marker) -> None:
    assert result_marker(result) is marker


@pytest.mark.parametrize("result", ["r", ItemStatus.RUNNING, ItemStatus.PENDING, "x"])
def test_only_terminal_results_are_recorded(result: str) -> None:
    with pytest.raises(ValueError, match="must be 's' or 'f'"):
        result_marker(result)


async def test_done_items_are_the_terminal_ones(cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j", job(5))
    await cache.mark_running("j", [0, 1, 2, 3], T0)
    await cache.record_results("j", [(0, ItemStatus.SUCCEEDED), (1, "f")], T0 + 1)
    assert await done_items(redis, cache.key("j"), [0, 1, 2, 3, 4]) == {0, 1}
    assert await done_items(redis, cache.key("j"), []) == set()


async def test_item_states_read_every_marker_of_a_job(cache: JobStateCache) -> None:
    assert await cache.item_states("nope") is None
    await cache.init_job("j", job(4))
    assert await cache.item_states("j") == {}
    await cache.mark_running("j", [0, 1, 2], T0)
    await cache.record_results("j", [(0, "s"), (1, ItemStatus.FAILED)], T0 + 1)
    states = await cache.item_states("j")
    assert states == {0: ItemStatus.SUCCEEDED, 1: ItemStatus.FAILED, 2: ItemStatus.RUNNING}
