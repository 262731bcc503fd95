"""The submit body, read once: from raw bytes, by one typed decoder built once.

Whatever a client sends — malformed or truncated JSON, invalid UTF-8, NaN or Infinity, a
number out of range, a duplicate member, nesting thousands of levels deep, the wrong type at
any depth, an unknown member — is a 400 ``invalid_request`` whose ``errors`` point (RFC 6901)
at the offending member, never a 500; a body that is not JSON at all is a 415. The cost is
O(body size) and bounded: msgspec refuses to recurse past Python's recursion limit (we turn
its ``RecursionError`` into a 400), and the only free-form member, ``metadata``, is checked
for depth and integer range after decoding, which its size limit keeps small.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from core.config import Settings
from gateway import errors as E
from schemas.api import METADATA_MAX_DEPTH, METADATA_MAX_NUMBER, FieldError, SubmitRequest

_DECODER = msgspec.json.Decoder(SubmitRequest)
_ENCODER = msgspec.json.Encoder()
# msgspec's error location: ``$``, then ``.name``, ``[3]`` or ``[...]`` (a dict key).
_PATH = re.compile(r" - at `(\$[^`]*)`$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]*)`")
JSON_MEDIA_TYPES = ("application/json",)


def escape(token: str) -> str:
    """One RFC 6901 reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def check_media_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``)
    in UTF-8, the only encoding JSON has (RFC 8259)."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    if media not in JSON_MEDIA_TYPES and not (media.startswith("application/")
                                              and media.endswith("+json")):
        raise E.UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), not "
            f"{media or 'undeclared'}", errors=[FieldError("header:Content-Type",
                                                           "expected application/json")])
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
                "utf-8", "utf8"):
            raise E.UnsupportedMediaType(
                "JSON is UTF-8; drop the charset parameter or make it utf-8",
                errors=[FieldError("header:Content-Type", "charset must be utf-8")])


def pointer_of(message: str) -> tuple[str, str]:
    """msgspec's validation message as (RFC 6901 pointer, detail without the location). A
    dict key msgspec does not name (``[...]``) ends the pointer at the dict."""
    detail, pointer = message, ""
    if m := _PATH.search(message):
        detail = message[:m.start()]
        for step in _STEP.finditer(m.group(1)[1:]):
            if step.group(0) == "[...]":
                break
            pointer += "/" + escape(step.group(1) or step.group(2))
        else:
            if f := _FIELD.search(detail):
                pointer += "/" + escape(f.group(1))
    elif f := _FIELD.search(message):
        pointer = "/" + escape(f.group(1))
    return pointer, detail


def decode_submit(raw: bytes, content_type: str | None, settings: Settings) -> SubmitRequest:
    """The typed submission of a raw body; 415 or 400 (with pointers) for anything else. A
    submission over the item limit is returned unchecked for duplicates: the limits (413)
    come next, before any work."""
    check_media_type(content_type)
    try:
        req = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        pointer, detail = pointer_of(str(exc))
        raise E.InvalidRequest(f"the request body is not a valid submission: {detail}",
                               errors=[FieldError(pointer, detail)]) from None
    except msgspec.DecodeError as exc:
        raise E.InvalidRequest(f"the request body is not valid JSON: {exc}",
                               errors=[FieldError("", str(exc))]) from None
    except RecursionError:
        # Only ``metadata`` holds arbitrary JSON: every other member has a fixed shape, and
        # msgspec rejects a wrong shape (or an unknown member) before descending into it.
        raise E.InvalidRequest(
            f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep",
            errors=[FieldError("/metadata", "nested too deeply")]) from None
    if req.metadata is not None:
        check_metadata(req.metadata, settings.max_metadata_bytes)
    if len(req.items()) > settings.max_items_per_job:
        return req  # 413 next; a duplicate member in 10,000+ items is not worth a walk
    if (dup := duplicate_member(raw)) is not None:
        raise E.InvalidRequest(
            "the request body names the same member twice (RFC 8259 leaves the meaning "
            "undefined; we refuse to guess)",
            errors=[FieldError(dup, "duplicate member")])
    return req


def check_metadata(metadata: dict[str, Any], max_bytes: int) -> None:
    """At most ``max_bytes`` as JSON (413; measured first, in C, so the walk below is
    bounded), depth at most METADATA_MAX_DEPTH, numbers within ±METADATA_MAX_NUMBER (what
    every JSON reader downstream holds exactly), walked without recursion."""
    try:
        size = len(_ENCODER.encode(metadata))
    except RecursionError:
        raise E.InvalidRequest(
            f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep",
            errors=[FieldError("/metadata", "nested too deeply")]) from None
    if size > max_bytes:  # the same answer as gateway/limits.py gives
        raise E.PayloadTooLarge(f"metadata is {size} bytes; at most {max_bytes}",
                                errors=[FieldError("/metadata", f"{size} bytes encoded as JSON")])
    stack: list[tuple[Any, str, int]] = [(metadata, "/metadata", 1)]
    while stack:
        value, pointer, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > METADATA_MAX_DEPTH:
                raise E.InvalidRequest(
                    f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep",
                    errors=[FieldError(pointer, "nested too deeply")])
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, f"{pointer}/{escape(str(k))}", depth + 1) for k, v in pairs)
        elif isinstance(value, int | float) and not isinstance(value, bool) and (
                abs(value) > METADATA_MAX_NUMBER):
            raise E.InvalidRequest(
                f"numbers in metadata must lie within ±{METADATA_MAX_NUMBER} (I-JSON)",
                errors=[FieldError(pointer, "number out of range")])


class _Duplicate(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Duplicate
    return d


def duplicate_member(raw: bytes) -> str | None:
    """The pointer of the first object that names a member twice, or None. msgspec keeps the
    last of duplicates silently; the standard library's parser shows us the pairs. Only a
    body that already decoded (so bounded in depth) comes here; only a duplicate pays for
    finding its pointer."""
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
        return None
    except _Duplicate:
        pass
    except (ValueError, RecursionError):  # msgspec accepted it: nothing more to say
        return None
    tree = json.loads(raw, object_pairs_hook=lambda pairs: ("pairs", pairs))
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack:
        value, pointer = stack.pop()
        if isinstance(value, tuple):
            seen: set[str] = set()
            for k, _ in value[1]:
                if k in seen:
                    return f"{pointer}/{escape(k)}"
                seen.add(k)
            stack.extend((v, f"{pointer}/{escape(k)}") for k, v in reversed(value[1]))
        elif isinstance(value, list):
            stack.extend((v, f"{pointer}/{i}") for i, v in reversed(list(enumerate(value))))
    return ""  # pragma: no cover - the first pass found one
