"""W3C Trace Context (``traceparent``), the log context that carries it, and spans.

inferq *propagates* the caller's trace so that every log line a job causes — gateway,
scheduler, runner — carries one ``trace_id`` an operator can search for: the gateway takes the
caller's ``traceparent`` (or starts a trace), answers with its own, and sends a child on the
job's chunks (NATS header and the chunk body); the scheduler hands each job's child to the
runner in the batch (a batch serves several jobs: the body maps job id to traceparent; the
header names the first).

Each hop's span is also *recorded* (``record_span``, ``span``, ``child_spans``) when a sink is
installed: ``core.otel`` installs one that exports them over OTLP when ``otlp_endpoint`` is
configured. Without a sink recording is one ``None`` check, and no tracing SDK is imported.
"""

from __future__ import annotations

import contextvars
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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
        """A new trace (no valid incoming context), sampled or not by ``set_sample_ratio``
        (every trace while nothing is exported)."""
        trace_id = _random_hex(128)
        return cls(trace_id, _random_hex(64), "01" if _root_sampled(trace_id) else "00")

    @property
    def sampled(self) -> bool:
        """The sampled flag: whether the trace's spans are recorded (W3C ``trace-flags``)."""
        return int(self.flags, 16) & 1 == 1

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


# -- spans ------------------------------------------------------------------------------------

Attributes = dict[str, str | int | float | bool]


class FinishedSpan(msgspec.Struct, frozen=True):
    """One hop of a job's trace, finished: what a sink exports (``core.otel``)."""

    service: str
    """The role that did the work: ``gateway``, ``scheduler``, ``runner``."""
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    """The span that caused this one (the caller's, or the previous hop's); None: a root."""
    start_ns: int
    end_ns: int
    kind: str = "internal"
    """server | producer | consumer | internal (OpenTelemetry's span kinds)."""
    attributes: Attributes = {}
    error: str | None = None
    """Why the work failed (an exception's name, an HTTP 5xx); None: it did not."""


SpanSink = Callable[[FinishedSpan], None]
_sink: SpanSink | None = None
_sample_bound = 1 << 64  # trace ids whose low 64 bits are under it are sampled at the root


def set_span_sink(sink: SpanSink | None, sample_ratio: float = 1.0) -> None:
    """Install (or with None remove) where finished spans go, and the fraction of new traces
    sampled at the root. A sink is called on the event loop: it must only enqueue."""
    global _sink, _sample_bound
    _sink = sink
    # OpenTelemetry's TraceIdRatioBased: decided on the trace id's low 64 bits, so every
    # process with the same ratio takes the same decision on the same trace.
    _sample_bound = round(max(0.0, min(1.0, sample_ratio)) * (1 << 64)) if sink else 1 << 64


def exporting() -> bool:
    """Whether spans are recorded at all (a sink is installed)."""
    return _sink is not None


def _root_sampled(trace_id: str) -> bool:
    return _sample_bound > (1 << 64) - 1 or int(trace_id[16:], 16) < _sample_bound


def record_span(service: str, name: str, ctx: TraceParent | str | None,
                received: str | None, start_ns: int, end_ns: int | None = None, *,
                kind: str = "internal", attributes: Attributes | None = None,
                error: str | None = None) -> None:
    """Hand a finished span to the sink. ``ctx`` is the span's own context (its id is
    ``ctx.parent_id``, as sent to the next hop); ``received`` is the ``traceparent`` it
    continued, naming its parent (None or invalid: a root). Nothing without a sink, a valid
    context, or the sampled flag (the root's decision travels with the trace)."""
    sink = _sink
    if sink is None or ctx is None:
        return
    tp = ctx if isinstance(ctx, TraceParent) else TraceParent.parse(ctx)
    if tp is None or not tp.sampled:
        return
    parent = TraceParent.parse(received)
    parent_id = parent.parent_id if parent is not None and parent.trace_id == tp.trace_id \
        else None
    sink(FinishedSpan(service, name, tp.trace_id, tp.parent_id, parent_id, start_ns,
                      time.time_ns() if end_ns is None else end_ns, kind, attributes or {},
                      error))


class _Span:
    """Times a block and records it as one span per context on exit (an exception leaving
    the block is the span's error)."""

    __slots__ = ("_attributes", "_kind", "_name", "_service", "_spans", "_start")

    def __init__(self, service: str, name: str, spans: list[tuple[TraceParent, str | None]],
                 kind: str, attributes: Attributes):
        """``spans``: (the span's context, the ``traceparent`` it continued) pairs."""
        self._service, self._name, self._spans = service, name, spans
        self._kind, self._attributes = kind, attributes
        self._start = 0

    def __enter__(self) -> None:
        self._start = time.time_ns()

    def __exit__(self, exc_type, exc, tb) -> None:
        end = time.time_ns()
        error = exc_type.__name__ if exc_type is not None else None
        for ctx, received in self._spans:
            record_span(self._service, self._name, ctx, received, self._start, end,
                        kind=self._kind, attributes=self._attributes, error=error)


_NO_SPAN: AbstractContextManager[None] = nullcontext()


def span(service: str, name: str, ctx: TraceParent | str | None, received: str | None, *,
         kind: str = "internal", **attributes: str | int | float | bool
         ) -> AbstractContextManager[None]:
    """Record the block as the span ``ctx`` (a context this hop made and sends on), child of
    the ``received`` traceparent; a shared no-op while nothing is exported."""
    if _sink is None or ctx is None:
        return _NO_SPAN
    tp = ctx if isinstance(ctx, TraceParent) else TraceParent.parse(ctx)
    if tp is None or not tp.sampled:
        return _NO_SPAN
    return _Span(service, name, [(tp, received)], kind, attributes)


def child_spans(service: str, name: str, parents: Iterable[str | None], *,
                kind: str = "internal", **attributes: str | int | float | bool
                ) -> AbstractContextManager[None]:
    """Record the block as a new child span of each received ``traceparent`` in ``parents``
    (one piece of work serving several traces: a batch of several jobs). The children's ids
    go nowhere further: they are leaves. A no-op while nothing is exported."""
    if _sink is None:
        return _NO_SPAN
    spans = []
    for value in parents:
        parent = TraceParent.parse(value)
        if parent is not None and parent.sampled:
            spans.append((parent.child(), value))
    return _Span(service, name, spans, kind, attributes) if spans else _NO_SPAN
