"""Cassandra result store: production. Needs the driver (the ``cassandra`` extra).

``statements`` holds the CQL (schema, prepared statements, TTLs), ``session`` the driver
(connecting, running and awaiting statements, translating its errors, telling which LWT
failures leave the outcome unknown), ``rows`` the record mapping, and ``store`` the logic.
Its configuration, :class:`~store.results.config.CassandraConfig`, needs no driver.
"""

from store.results.cassandra.session import settle, translate
from store.results.cassandra.statements import (
    ITEM_BUCKET,
    MAX_TTL,
    STATEMENTS,
    schema_statements,
    ttl,
)
from store.results.cassandra.store import CassandraResultStore

__all__ = ["ITEM_BUCKET", "MAX_TTL", "STATEMENTS", "CassandraResultStore", "schema_statements",
           "settle", "translate", "ttl"]
