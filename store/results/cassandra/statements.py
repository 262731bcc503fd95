"""The Cassandra store's CQL: its schema, every statement it prepares, and the TTL they bind.

Partitioning is in ``cassandra_schema.cql``. Every query is bounded (one item bucket, or a
LIMIT); lightweight transactions are exactly the statements with ``IF``.
"""

from __future__ import annotations

import math
import time
from importlib import resources

from schemas.states import LIVE_JOB, JobStatus
from store.results.base import JobRecord

ITEM_BUCKET = 1000
"""Item indexes per partition: ``(job_id, idx // ITEM_BUCKET)``, ~1.5 MB of embeddings."""
DAY, MINUTE = 86400, 60
"""Bucket widths of the tenant index (days) and of the unpublished-jobs index (minutes)."""
MAX_TTL = 630_720_000
"""Cassandra's ceiling on a TTL: 20 years."""

_JOB = ", ".join(JobRecord.__struct_fields__)
_JOB_MARKS = ", ".join("?" * len(JobRecord.__struct_fields__))
_ITEM = ("job_id, idx, status, model_version, client_id, output, error_code, error_message, "
         "error_retryable, finished_at")
_IDEM = "tenant, idem_key, request_hash, job_id, created_at, expires_at"
_LIVE = "(" + ", ".join(f"'{s}'" for s in sorted(LIVE_JOB)) + ")"

# {ks} is the configured keyspace. LWT statements are the ones with IF.
STATEMENTS: dict[str, str] = {
    "ping": "SELECT release_version FROM system.local",
    "create_job": f"INSERT INTO {{ks}}.jobs ({_JOB}) VALUES ({_JOB_MARKS}) "
                  "IF NOT EXISTS USING TTL ?",
    "get_job": f"SELECT {_JOB} FROM {{ks}}.jobs WHERE job_id = ?",
    "index_job": "INSERT INTO {ks}.jobs_by_tenant (tenant, day_bucket, created_at, job_id) "
                 "VALUES (?, ?, ?, ?) USING TTL ?",
    "list_first": "SELECT day_bucket, created_at, job_id FROM {ks}.jobs_by_tenant "
                  "WHERE tenant = ? AND day_bucket = ? LIMIT ?",
    "list_after": "SELECT day_bucket, created_at, job_id FROM {ks}.jobs_by_tenant "
                  "WHERE tenant = ? AND day_bucket = ? AND (created_at, job_id) < (?, ?) LIMIT ?",
    "add_unpublished": "INSERT INTO {ks}.unpublished (minute_bucket, created_at, job_id) "
                       "VALUES (?, ?, ?) USING TTL ?",
    "del_unpublished": "DELETE FROM {ks}.unpublished "
                       "WHERE minute_bucket = ? AND created_at = ? AND job_id = ?",
    "scan_unpublished": "SELECT minute_bucket, created_at, job_id FROM {ks}.unpublished "
                        "WHERE minute_bucket = ? AND created_at < ? LIMIT ?",
    "mark_published": "UPDATE {ks}.jobs USING TTL ? SET published = true WHERE job_id = ?",
    "mark_started": "UPDATE {ks}.jobs USING TTL ? SET started_at = ?, status = ? "
                    f"WHERE job_id = ? IF status = '{JobStatus.QUEUED}'",
    "finish_job": "UPDATE {ks}.jobs USING TTL ? SET status = ?, outcome = ?, finished_at = ?, "
                  f"error_code = ?, error_message = ? WHERE job_id = ? IF status IN {_LIVE}",
    # Not an LWT: the caller checked the record; racing correctors write the same values.
    "correct_job_end": "UPDATE {ks}.jobs USING TTL ? SET status = ?, outcome = ?, "
                       "finished_at = ?, error_code = ?, error_message = ? WHERE job_id = ?",
    "items_present": "SELECT idx FROM {ks}.items WHERE job_id = ? AND bucket = ? AND idx IN ?",
    "insert_item": f"INSERT INTO {{ks}}.items (bucket, {_ITEM}) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    "item_marks": "SELECT idx, status FROM {ks}.items WHERE job_id = ? AND bucket = ?",
    "items_after": f"SELECT {_ITEM} FROM {{ks}}.items "
                   "WHERE job_id = ? AND bucket = ? AND idx > ? LIMIT ?",
    # Filtering inside one partition of <= 1,000 rows: bounded work, no index needed.
    "items_after_status": f"SELECT {_ITEM} FROM {{ks}}.items WHERE job_id = ? AND bucket = ? "
                          "AND idx > ? AND status = ? LIMIT ? ALLOW FILTERING",
    "claim_key": f"INSERT INTO {{ks}}.idempotency ({_IDEM}) VALUES (?, ?, ?, ?, ?, ?) "
                 "IF NOT EXISTS USING TTL ?",
    "reclaim_key": "UPDATE {ks}.idempotency USING TTL ? SET request_hash = ?, job_id = ?, "
                   "created_at = ?, expires_at = ? WHERE tenant = ? AND idem_key = ? "
                   "IF expires_at = ?",
    "get_key": f"SELECT {_IDEM} FROM {{ks}}.idempotency WHERE tenant = ? AND idem_key = ?",
}
"""Every statement the store runs, by name; each is prepared once per store, on first use."""


def schema_statements(keyspace: str, replication: str) -> list[str]:
    """The DDL of ``cassandra_schema.cql`` for one keyspace, one statement each."""
    text = resources.files(__package__).joinpath("cassandra_schema.cql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = text.format(keyspace=keyspace, replication=replication)
    return [s.strip() for s in text.split(";") if s.strip()]


def ttl(expires_at: float) -> int:
    """Seconds left until ``expires_at``, within what Cassandra accepts (1 s at least)."""
    return max(1, min(MAX_TTL, math.ceil(expires_at - time.time())))
