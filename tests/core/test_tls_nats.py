"""TLS to NATS: a real nats-server that requires TLS, with certificates from a CA this test
makes; the settings' CA (and client certificate, for mutual TLS) are what let a role in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import bus
from core.config import Settings
from core.tls import TlsConfigError, TlsFiles
from inferq.embedded import ServerProcess, nats_server
from tests.secure import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def tls_nats(tmp_path: Path, pki: Pki, *, verify_clients: bool = False) -> ServerProcess:
    return nats_server(tmp_path / "nats", log_path=tmp_path / "nats.log",
                       tls=pki.server(verify_clients)).start()


async def round_trip(settings: Settings) -> bytes:
    nc = await bus.connect_role(settings, "gateway")
    try:
        sub = await nc.subscribe("_INBOX.gateway.echo")
        await nc.publish("_INBOX.gateway.echo", b"over tls")
        msg = await sub.next_msg(timeout=5)
        assert nc.connected_url is not None and nc.connected_url.scheme == "nats"
        return msg.data
    finally:
        await nc.close()


async def test_a_role_connects_with_the_configured_ca_and_not_without_it(tmp_path, pki) -> None:
    server = tls_nats(tmp_path, pki)
    try:
        url = f"nats://127.0.0.1:{server.port}"
        # The URL stays nats://: the server requires TLS and the CA setting provides it.
        assert await round_trip(Settings(nats_url=url, nats_tls_ca=str(pki.ca))) == b"over tls"

        # Without the CA the system's trust store knows nothing of this server: refused at
        # once (a certificate error is not worth retrying), naming the reason.
        with pytest.raises(bus.BusUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.wait_for(bus.connect_role(Settings(nats_url=url), "gateway"), 10)
        other = make_pki(tmp_path, "another-ca")
        with pytest.raises(bus.BusUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.wait_for(bus.connect_role(
                Settings(nats_url=url, nats_tls_ca=str(other.ca)), "gateway"), 10)
    finally:
        server.stop()


async def test_mutual_tls_needs_the_client_certificate(tmp_path, pki) -> None:
    server = tls_nats(tmp_path, pki, verify_clients=True)
    try:
        url = f"nats://127.0.0.1:{server.port}"
        with pytest.raises(bus.BusUnavailable):
            await asyncio.wait_for(bus.connect_role(
                Settings(nats_url=url, nats_tls_ca=str(pki.ca)), "gateway"), 10)
        with_cert = Settings(nats_url=url, nats_tls_ca=str(pki.ca),
                             nats_tls_cert=str(pki.client_cert),
                             nats_tls_key=str(pki.client_key))
        assert await round_trip(with_cert) == b"over tls"
    finally:
        server.stop()
    assert "TLS handshake error" in (tmp_path / "nats.log").read_text()


def test_inconsistent_tls_files_are_refused_before_any_connection(tmp_path, pki) -> None:
    with pytest.raises(TlsConfigError, match="needs its key"):
        TlsFiles(ca=str(pki.ca), cert=str(pki.client_cert)).context()
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        TlsFiles(ca=str(tmp_path / "missing.pem")).context()
    assert not TlsFiles().enabled and TlsFiles(ca=str(pki.ca)).enabled


def test_connection_passwords_stay_out_of_the_settings_repr() -> None:
    settings = Settings(nats_user="gateway", nats_password="nats-secret-1",
                        redis_username="inferq", redis_password="redis-secret-2")
    assert "nats-secret-1" not in repr(settings) and "redis-secret-2" not in repr(settings)
    assert "nats_user='gateway'" in repr(settings)
