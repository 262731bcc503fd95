"""The job state cache in Redis: :class:`JobStateCache` and what it takes and answers.

- ``cache``: the cache itself, one Lua script per change;
- ``layout``: the job hash's fields, written and read back;
- ``restore``: what a hash rebuilt from the result store must say;
- ``snapshot``: the status document and its ETag;
- ``records``: the Structs the cache takes and returns.
"""

from store.jobstate.cache import JobStateCache
from store.jobstate.records import (
    Backlog,
    FailOutcome,
    JobFields,
    RecordOutcome,
    RestoreOutcome,
    TerminalRecord,
)
from store.jobstate.snapshot import JobStatusSnapshot, etag_for

__all__ = [
    "Backlog", "FailOutcome", "JobFields", "JobStateCache", "JobStatusSnapshot", "RecordOutcome",
    "RestoreOutcome", "TerminalRecord", "etag_for",
]
