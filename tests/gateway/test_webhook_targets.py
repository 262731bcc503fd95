"""The webhook SSRF policy and the Standard Webhooks signature, without servers."""

from __future__ import annotations

import base64
import random

import pytest

from core import webhook_signature as sig
from gateway.webhooks.dispatcher import backoff_s
from gateway.webhooks.targets import TargetPolicy, TargetRefused

STRICT = TargetPolicy.parse(False, "")
DEV = TargetPolicy.parse(True, "127.0.0.0/8,::1/128")


@pytest.mark.parametrize("url", [
    "http://example.com/", "https://127.0.0.1/", "https://[::1]/", "https://10.0.0.1/",
    "https://172.16.5.4/", "https://192.168.1.1/", "https://169.254.169.254/",
    "https://[fe80::1]/", "https://[::ffff:10.0.0.1]/", "https://0.0.0.0/",
    "https://224.0.0.1/", "https://u:p@x.com/",
    "file:///etc/passwd", "https:///nohost", "https://example.com:99999/",
])
def test_strict_policy_refuses(url: str) -> None:
    with pytest.raises(TargetRefused):
        STRICT.check_url(url)


def test_public_https_passes_and_dev_allows_loopback_http() -> None:
    assert STRICT.check_url("https://hooks.example.com/x") == ("https", "hooks.example.com", 443)
    assert DEV.check_url("http://127.0.0.1:8080/x") == ("http", "127.0.0.1", 8080)
    with pytest.raises(TargetRefused):
        DEV.check_url("http://10.0.0.1/")  # only the networks the operator named


async def test_a_name_resolving_to_loopback_is_refused_at_delivery() -> None:
    for url in ("https://localhost/hook", "https://LocalHost:8443/x"):
        with pytest.raises(TargetRefused):
            await STRICT.resolve(url)
    host, ip = await DEV.resolve("http://localhost:9/hook")
    assert host == "localhost" and ip.is_loopback


def test_signature_matches_the_standard_webhooks_reference() -> None:
    # The example of the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    assert sig.sign(secret, msg_id, ts, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    two = "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="  # any one may match
    sig.verify(secret, {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                        "webhook-signature": two}, body, now=ts + 10)
    with pytest.raises(sig.InvalidSignature):  # too old: a replay
        sig.verify(secret, sig.headers(secret, msg_id, body, now=ts), body, now=ts + 600)
    with pytest.raises(sig.InvalidSignature):
        sig.verify("whsec_" + base64.b64encode(b"x").decode(),
                   sig.headers(secret, msg_id, body), body)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, 5.0, 3600.0, rng) for n in range(1, 15)]
    assert all(2.5 * 2 ** (n - 1) <= d <= 5 * 2 ** (n - 1) for n, d in enumerate(delays[:9], 1))
    assert all(1800 <= d <= 3600 for d in delays[10:])
