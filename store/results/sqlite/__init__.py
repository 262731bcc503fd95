"""SQLite result store: the embedded default, one file shared by several processes.

The gateway and every runner replica open the same file: ``connections`` keeps that safe
(WAL, full sync, a busy timeout, short ``BEGIN IMMEDIATE`` writes, a thread pool), ``schema``
holds the tables and the row mapping, and ``store`` the queries.
"""

from store.results.sqlite.store import SqliteResultStore

__all__ = ["SqliteResultStore"]
