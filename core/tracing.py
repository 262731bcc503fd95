"""W3C Trace Context (``traceparent``) and the log context that carries it.

inferq does not export spans (no tracing SDK is configured); it *propagates* the caller's
trace so that every log line a job causes — gateway, scheduler, runner — carries one
``trace_id`` an operator can search for, and a tracing backend added later finds the
context already on the wire: the gateway takes the caller's ``traceparent`` (or starts a
trace), answers with its own, and sends a child on the job's chunks (NATS header and the
chunk body); the scheduler hands each job's child to the runner in the batch (a batch serves
several jobs: the body maps job id to traceparent; the header names the first).
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

HEADER = "traceparent"

_rng = random.Random()  # seeded from the OS once per process
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class TraceParent(msgspec.Struct, frozen=True):
    """A parsed ``traceparent``: the trace, the span that sent it, and the trace flags."""

    trace_id: str
    parent_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, value: str | None) -> TraceParent | None:
        """A valid header, else None (the caller then starts a new trace). Version 00 is
        exactly 55 characters; a later version may append ``-...`` fields, which are
        ignored; version ff, all-zero ids and upper-case hex are invalid (W3C Trace Context
        §3.2)."""
        if not value:
            return None
        value = value.strip()
        if len(value) > 55 and not (value[:2] != "00" and value[55] == "-"):
            return None
        m = _TRACEPARENT.match(value[:55])
        if m is None:
            return None
        version, trace_id, parent_id, flags = m.groups()
        if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
            return None
        return cls(trace_id, parent_id, flags)

    @classmethod
    def start(cls) -> TraceParent:
        """A new trace (no valid incoming context)."""
        return cls(_random_hex(128), _random_hex(64))

    def child(self) -> TraceParent:
        """The same trace, a new span id for the next hop."""
        return TraceParent(self.trace_id, _random_hex(64), self.flags)

    def header(self) -> str:
        """The version 00 header value."""
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def _random_hex(bits: int) -> str:
    """Random, non-zero ids (W3C asks for randomness, not secrecy: no syscall per request)."""
    return f"{_rng.getrandbits(bits) | 1:0{bits // 4}x}"


def new_request_id() -> str:
    """A request id for a caller that sent no ``X-Request-Id`` (32 hex characters)."""
    return _random_hex(128)


def continue_or_start(value: str | None) -> TraceParent:
    """The child of a valid incoming ``traceparent``, or a new trace."""
    parent = TraceParent.parse(value)
    return parent.child() if parent is not None else TraceParent.start()


LOG_FIELDS = ("request_id", "job_id", "tenant", "trace_id", "batch_id")
# Each binding sets a new dict (never mutated in place), so tasks never see each other's.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "inferq_log_context", default=None)


def log_context() -> dict[str, str]:
    """The fields bound in this task (see ``bound``); the JSON log formatter adds them."""
    return _context.get() or {}


def _with(fields: dict[str, str | None]) -> dict[str, str]:
    return {**log_context(), **{k: v for k, v in fields.items() if v is not None}}


def bind_fields(**fields: str | None) -> None:
    """Add fields to this task's log context from here on (None values are ignored)."""
    _context.set(_with(fields))


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add fields to the log context for the duration of the block."""
    token = _context.set(_with(fields))
    try:
        yield
    finally:
        _context.reset(token)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a header value, for log lines; None if it is not valid."""
    parsed = TraceParent.parse(traceparent)
    return parsed.trace_id if parsed is not None else None
