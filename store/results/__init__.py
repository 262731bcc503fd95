"""The result store: job records, item results and idempotency keys, behind one interface.

``open_result_store(url)`` picks the backend from ``INFERQ_RESULTS_URL``'s value:

- ``sqlite:///abs/path/results.db`` (``sqlite:////abs/path`` works too), or
  ``sqlite:///results.db`` / ``sqlite:///./dir/results.db`` relative to the working
  directory. Creates its schema on first use: the embedded default needs no migration.
- ``cassandra://[user:password@]host1,host2[:port]/keyspace[?option=value&...]`` with
  options ``dc``, ``replication`` (``dc1:3,dc2:3``), ``consistency``,
  ``serial_consistency``, ``protocol`` (CQL protocol version, default 5), ``timeout_s``,
  ``retention_s``, ``lookback_s``, and TLS: ``tls=true`` (verify against the system's
  trust store), ``tls_ca=/path/ca.pem`` (implies ``tls=true``), ``tls_cert`` and
  ``tls_key`` (mutual TLS). Never creates
  its schema by itself: run ``inferq store migrate`` (``ResultStore.migrate``) once.

The family: ``base`` (the interface, records, errors, cursors), ``config`` (the URLs),
``codec`` (item outputs), and one subpackage per backend. The Cassandra backend (and its
driver, the ``cassandra`` extra) is imported only when a ``cassandra://`` URL is opened.
"""

from __future__ import annotations

from store.results.base import (
    IdempotencyRecord,
    InvalidCursor,
    ItemRecord,
    JobRecord,
    ResultStore,
    StoreError,
    StoreUnavailable,
)
from store.results.config import CassandraConfig, sqlite_path
from store.results.sqlite import SqliteResultStore

__all__ = [
    "CassandraConfig",
    "IdempotencyRecord",
    "InvalidCursor",
    "ItemRecord",
    "JobRecord",
    "ResultStore",
    "SqliteResultStore",
    "StoreError",
    "StoreUnavailable",
    "open_result_store",
    "sqlite_path",
]


def open_result_store(url: str) -> ResultStore:
    """The result store named by ``url``; see the module docstring. Does no I/O."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return SqliteResultStore(sqlite_path(url))
    if scheme == "cassandra":
        from store.results.cassandra import CassandraResultStore

        return CassandraResultStore(CassandraConfig.from_url(url))
    raise ValueError(f"unsupported result store URL {url!r} (sqlite:/// or cassandra://)")
