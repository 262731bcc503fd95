"""Request limits, checked before any work: items per job, text length, metadata size and the
Idempotency-Key's form. (The body size is enforced by Litestar while it reads the body.)

Each violation names its field: a JSON pointer (RFC 6901) into the body, or ``header:<name>``
/ ``query:<name>`` for a header or query parameter.
"""

from __future__ import annotations

import re

import msgspec

from core.config import Settings
from gateway import errors as E
from schemas.api import FieldError, SubmitRequest

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces or control characters


def check_idempotency_key(key: str | None, settings: Settings) -> str | None:
    """The key as given, or None when absent; 400 when too long or not printable ASCII."""
    if key is None:
        return None
    pointer = f"header:{IDEMPOTENCY_HEADER}"
    if not 1 <= len(key) <= settings.max_idempotency_key_chars:
        raise E.InvalidRequest(
            f"Idempotency-Key must be 1 to {settings.max_idempotency_key_chars} characters",
            errors=[FieldError(pointer, f"{len(key)} characters")])
    if not _KEY_CHARS.fullmatch(key):
        raise E.InvalidRequest(
            "Idempotency-Key must be printable ASCII without spaces (a UUID is a good key)",
            errors=[FieldError(pointer, "characters outside \\x21-\\x7e")])
    return key


def check_submit(req: SubmitRequest, settings: Settings) -> None:
    """Shape and size limits of a submission: 400 for shape, 413 for size."""
    if (req.inputs is None) == (req.input is None):
        raise E.InvalidRequest("give exactly one of `inputs` (a list) or `input` (one item)",
                               errors=[FieldError("/inputs", "exactly one of inputs/input")])
    items = req.items()
    if not items:
        raise E.InvalidRequest("`inputs` is empty",
                               errors=[FieldError("/inputs", "at least one item")])
    if len(items) > settings.max_items_per_job:
        raise E.PayloadTooLarge(
            f"{len(items)} items; a job holds at most {settings.max_items_per_job}",
            errors=[FieldError("/inputs", f"at most {settings.max_items_per_job} items")])
    limit = settings.max_text_chars
    too_long = [
        FieldError(f"/inputs/{i}/text" if req.inputs is not None else "/input/text",
                   f"{len(it.text)} characters; at most {limit}")
        for i, it in enumerate(items) if len(it.text) > limit
    ]
    if too_long:
        raise E.PayloadTooLarge(f"{len(too_long)} item(s) over the text length limit ({limit})",
                                errors=too_long[:20])
    if req.metadata is not None:
        size = len(msgspec.json.encode(req.metadata))
        if size > settings.max_metadata_bytes:
            raise E.PayloadTooLarge(
                f"metadata is {size} bytes; at most {settings.max_metadata_bytes}",
                errors=[FieldError("/metadata", f"{size} bytes encoded as JSON")])
