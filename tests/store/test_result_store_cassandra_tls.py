"""TLS to Cassandra: a live node of its own that accepts only TLS clients (Cassandra 5's PEM
``client_encryption_options``), with certificates from a CA this test makes; the URL's
``tls_ca`` option is what lets the store in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from inferq.cassandra_node import (
    cassandra_node,
    start_node,
)
from inferq.embedded import ServerProcess
from store.results import CassandraConfig, JobRecord, open_result_store
from store.results.base import StoreUnavailable
from tests.cassandra_fixtures import node_runtime
from tests.secure import Pki, make_pki

KEYSPACE = "inferq_tls"


def test_the_url_names_the_tls_files() -> None:
    cfg = CassandraConfig.from_url("cassandra://h1/ks?tls_ca=/etc/ca.pem&tls_cert=/c.pem"
                                   "&tls_key=/k.pem")
    assert cfg.tls is not None and (cfg.tls.ca, cfg.tls.cert, cfg.tls.key) == (
        "/etc/ca.pem", "/c.pem", "/k.pem")
    assert CassandraConfig.from_url("cassandra://h1/ks?tls=true").tls.ca is None
    assert CassandraConfig.from_url("cassandra://h1/ks").tls is None
    with pytest.raises(ValueError, match="tls=false and TLS files"):
        CassandraConfig.from_url("cassandra://h1/ks?tls=false&tls_ca=/ca.pem")


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Pki]]:
    """A node of this module's own (~20 s to start) that refuses plain CQL."""
    pytest.importorskip("cassandra")
    home, java = node_runtime()
    data = tmp_path_factory.mktemp("cassandra-tls")
    pki = make_pki(data)
    node = start_node(cassandra_node(data / "node", home, java=java, tls=pki.server(),
                                     log_path=data / "stdout.log"))
    try:
        yield node, pki
    finally:
        node.stop(grace=30.0)


def url(node: ServerProcess, tls: str) -> str:
    return (f"cassandra://{node.host}:{node.port}/{KEYSPACE}"
            f"?dc=datacenter1&replication=datacenter1:1&timeout_s=20{tls}")


@pytest.mark.live_cassandra
async def test_the_store_works_over_tls_verified_by_the_ca(tls_node) -> None:
    node, pki = tls_node
    store = open_result_store(url(node, f"&tls_ca={pki.ca}"))
    try:
        await store.migrate()
        now = time.time()
        job = JobRecord(job_id=uuid.uuid4().hex, tenant="t", model="minilm", model_version=1,
                        priority="batch", total=1, chunks=1, created_at=now,
                        expires_at=now + 3600)
        await store.create_job(job)
        assert (await store.get_job(job.job_id)).job_id == job.job_id
    finally:
        await store.close()


@pytest.mark.live_cassandra
async def test_plain_text_and_an_unknown_ca_are_refused(tls_node, tmp_path) -> None:
    node, _ = tls_node
    other = make_pki(tmp_path, "another-ca")
    # Plain CQL: the node resets the connection. TLS verified against another CA, or
    # against the system's trust store: this client refuses the node's certificate.
    for tls, why in (("", "Connection reset"),
                     (f"&tls_ca={other.ca}", "CERTIFICATE_VERIFY_FAILED"),
                     ("&tls=true", "CERTIFICATE_VERIFY_FAILED")):
        store = open_result_store(url(node, tls))
        try:
            with pytest.raises(StoreUnavailable, match=why):
                await store.ping()
        finally:
            await store.close()
