"""``INFERQ_RESULTS_URL`` forms: which backend, which file or cluster, which options."""

from __future__ import annotations

import pytest

from store.results import CassandraConfig, SqliteResultStore, open_result_store, sqlite_path


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///abs/path/results.db", "/abs/path/results.db"),
    ("sqlite:////abs/path/results.db", "/abs/path/results.db"),
    ("sqlite:///results.db", "results.db"),
    ("sqlite:///./state/results.db", "./state/results.db"),
    ("sqlite:///srv/my%20data/results.db", "/srv/my data/results.db"),
])
def test_sqlite_urls_name_absolute_and_relative_files(url: str, path: str) -> None:
    assert sqlite_path(url) == path
    store = open_result_store(url)
    assert isinstance(store, SqliteResultStore) and store.path == path


@pytest.mark.parametrize("url", ["sqlite://results.db", "sqlite:///", "sqlite:///:memory:",
                                 "postgres://db/results", "results.db"])
def test_unusable_urls_are_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError):
        open_result_store(url)


def test_a_cassandra_url_carries_hosts_port_keyspace_and_options() -> None:
    cfg = CassandraConfig.from_url(
        "cassandra://inferq:s%3Acret@cass1,cass2:9142/inferq_prod?dc=eu1&replication=eu1:3,us1:3"
        "&consistency=local_quorum&serial_consistency=LOCAL_SERIAL&timeout_s=2.5"
        "&retention_s=86400&lookback_s=600&protocol=4")
    assert cfg == CassandraConfig(
        hosts=("cass1", "cass2"), port=9142, keyspace="inferq_prod", local_dc="eu1",
        replication=(("eu1", 3), ("us1", 3)), consistency="LOCAL_QUORUM",
        serial_consistency="LOCAL_SERIAL", request_timeout_s=2.5, retention_s=86400.0,
        recovery_lookback_s=600.0, username="inferq", password="s:cret", protocol_version=4)
    assert "s:cret" not in repr(cfg)
    assert cfg.replication_cql() == "{'class': 'NetworkTopologyStrategy', 'eu1': 3, 'us1': 3}"


def test_a_bare_cassandra_url_defaults_to_rf3_local_quorum_and_serial() -> None:
    cfg = CassandraConfig.from_url("cassandra://10.0.0.1,[::1]/inferq")
    assert (cfg.hosts, cfg.port) == (("10.0.0.1", "::1"), 9042)
    assert (cfg.consistency, cfg.serial_consistency) == ("LOCAL_QUORUM", "SERIAL")
    assert cfg.replication_cql() == "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"


@pytest.mark.parametrize(("url", "why"), [
    ("cassandra://h1/", "keyspace"),
    ("cassandra://h1/bad-name", "keyspace"),
    ("cassandra://h1:9042,h2:9043/ks", "one port"),
    ("cassandra://h1/ks?color=blue", "unknown"),
    ("cassandra://h1/ks?replication=dc1", "dc1:3"),
    ("cassandra://h1/ks?replication=dc'1:3", "replication"),
    ("cassandra://h1/ks?consistency=SOMETIMES", "consistency"),
    ("cassandra://h1/ks?serial_consistency=QUORUM", "serial"),
    ("cassandra://h1/ks?protocol=6", "protocol"),
])
def test_bad_cassandra_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        CassandraConfig.from_url(url)


def test_opening_a_cassandra_url_does_no_io() -> None:
    pytest.importorskip("cassandra")
    from store.results.cassandra import CassandraResultStore

    store = open_result_store("cassandra://203.0.113.1/inferq")  # unroutable: must not connect
    assert isinstance(store, CassandraResultStore)
    assert store.config.hosts == ("203.0.113.1",)
