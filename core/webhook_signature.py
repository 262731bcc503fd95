"""Standard Webhooks signatures (https://www.standardwebhooks.com): what the gateway signs a
delivery with and what a receiver checks.

``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of ``<webhook-id>.<webhook-timestamp>.
<body>`` under the secret. A secret written ``whsec_<base64>`` (the convention's form) keys
the HMAC with the decoded bytes; any other string with its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300
"""How far a receiver accepts a timestamp from its clock (the convention's replay window)."""


class InvalidSignature(ValueError):
    """The request was not signed with this secret, or too long ago."""


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_`` + base64 decoded, else the UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of a request sent now."""
    ts = int(time.time() if now is None else now)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes,
           now: float | None = None, tolerance_s: float = TOLERANCE_S) -> None:
    """What a receiver does: raises ``InvalidSignature`` unless one of the request's ``v1``
    signatures matches (in constant time) and its timestamp is within the tolerance."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = lower["webhook-id"], int(lower["webhook-timestamp"])
        given = lower["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("missing or malformed webhook headers") from exc
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = sign(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected, sig) for sig in given):
        raise InvalidSignature("no signature matches")
