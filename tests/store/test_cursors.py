"""Pagination cursors: made, read and checked in one place (``store.results.base``); a cursor
the store did not make is ``InvalidCursor``, a client's error."""

from __future__ import annotations

import pytest

from store.results.base import (
    InvalidCursor,
    decode_cursor,
    decode_index_cursor,
    encode_cursor,
    encode_index_cursor,
)


def test_a_cursor_round_trips_its_parts_and_is_url_safe() -> None:
    cursor = encode_cursor([19_700.5, "job/+?=", 3])
    assert decode_cursor(cursor, (float, str, int)) == [19_700.5, "job/+?=", 3]
    assert not set(cursor) & set("+/=")


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None, (int,)) is None
    assert decode_cursor("", (int,)) is None
    assert decode_index_cursor(None) == -1


def test_a_results_cursor_points_after_an_item() -> None:
    assert decode_index_cursor(encode_index_cursor(41)) == 41


@pytest.mark.parametrize("cursor", [
    "not-a-cursor",                      # not base64 JSON
    encode_cursor(["41"]),               # a string where an index belongs
    encode_cursor([True]),               # a bool is not an int here
    encode_cursor([1, 2]),               # too many parts
    encode_cursor([1.5, "job"]),         # another listing's cursor
])
def test_a_cursor_the_store_did_not_make_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        decode_index_cursor(cursor)
    assert info.value.code == "invalid_request" and not info.value.retryable
    assert isinstance(info.value, ValueError)
