"""NATS subject and stream names: the one place that spells them."""

from __future__ import annotations

import re

from schemas.states import Priority

JOBS_STREAM = "JOBS"
BATCHES_STREAM = "BATCHES"
DLQ_STREAM = "DLQ"

JOBS_PREFIX = "inferq.jobs"
BATCHES_PREFIX = "inferq.batches"
DLQ_PREFIX = "inferq.dlq"
SIGNAL_PREFIX = "inferq.signal"
"""Core NATS (no stream captures it): wake-up hints that are safe to lose."""

# Tokens that become subject parts must not contain '.', '*', '>' or whitespace.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_token(value: str, what: str) -> str:
    """``value`` if it is safe as one subject token (no dots or wildcards), else ValueError."""
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token ([A-Za-z0-9_-]{{1,64}})")
    return value


def job_subject(model: str, priority: str, tenant: str) -> str:
    """Where the gateway publishes a job's chunks: one subject per lane."""
    return f"{JOBS_PREFIX}.{model}.{priority}.{tenant}"


def jobs_filter(model: str = "*", priority: str = "*", tenant: str = "*") -> str:
    """A filter over job subjects; each part left out matches any value."""
    return f"{JOBS_PREFIX}.{model}.{priority}.{tenant}"


URGENT = "interactive"
"""The last token of an urgent batch subject (and suffix of its consumer): batches led by
interactive items, which runners take ahead of the batch work they hold."""


def batch_subject(model: str, version: int, *, urgent: bool = False) -> str:
    """Where the scheduler publishes formed batches for runners of one model version; urgent
    (interactive-led) batches go to a subject of their own, pulled ahead of the rest."""
    base = f"{BATCHES_PREFIX}.{model}.{version}"
    return f"{base}.{URGENT}" if urgent else base


def dlq_subject(model: str, version: int) -> str:
    """Where batches that exhausted their deliveries are recorded, per model version."""
    return f"{DLQ_PREFIX}.{model}.{version}"


def batch_wanted_subject(model: str, version: int) -> str:
    """A runner of this model version is asking for its next batch: form it now."""
    return f"{SIGNAL_PREFIX}.batch_wanted.{model}.{version}"


BATCH_WANTED_FILTER = f"{SIGNAL_PREFIX}.batch_wanted.>"


def work_arrived_subject(model: str, priority: str, tenant: str) -> str:
    """A job's first chunk is on its lane: schedulers look at their lanes now."""
    return f"{SIGNAL_PREFIX}.work_arrived.{model}.{priority}.{tenant}"


WORK_ARRIVED_FILTER = f"{SIGNAL_PREFIX}.work_arrived.>"


def is_interactive_arrival(subject: str) -> bool:
    """Whether a work-arrived hint announces an interactive job's chunk."""
    parts = subject.split(".")
    return len(parts) == 6 and parts[4] == Priority.INTERACTIVE.value


def lane_consumer(model: str, priority: str, tenant: str) -> str:
    """Durable name of the pull consumer for one (model, priority, tenant) lane."""
    return f"lane_{model}_{priority}_{tenant}"


def runner_consumer(model: str, version: int, *, urgent: bool = False) -> str:
    """Durable name of the pull consumer that every runner of one model version shares (one
    for its batch work, one for its urgent batches)."""
    base = f"runners_{model}_{version}"
    return f"{base}_{URGENT}" if urgent else base


def parse_job_subject(subject: str) -> tuple[str, str, str]:
    """(model, priority, tenant) of a job subject."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:2]) != JOBS_PREFIX:
        raise ValueError(f"not a job subject: {subject!r}")
    return parts[2], parts[3], parts[4]
