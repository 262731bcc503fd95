"""OpenTelemetry export of inferq's spans over OTLP/HTTP, only when ``otlp_endpoint`` is set.

``core.tracing`` records each hop of a job — the gateway's request and its publish, the
scheduler's batch formation per chunk, the runner's inference and write-back per job of a
batch — with the ids that travel on the wire, so a job's spans from every role join into one
trace. This module turns them into the SDK's ``ReadableSpan`` with those very ids (the SDK's
tracer would choose its own) and hands them to a ``BatchSpanProcessor``: a bounded queue and a
background thread that posts protobuf batches to ``<endpoint>/v1/traces``, dropping spans
rather than blocking when the collector is slow or down.

The SDK is imported only by ``install`` with an endpoint configured: a role without one never
loads it. One exporter per process, shared by the roles running in it (``inferq dev`` runs
all three): each span carries its own role's ``service.name``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import Any

from core import tracing
from core.config import Settings
from core.tracing import FinishedSpan

log = logging.getLogger("inferq.otel")

SCOPE = "inferq"
"""The instrumentation scope of every span."""

EXPORT_DELAY_MS = 1000
"""Longest a finished span waits in the queue before a batch is posted."""

QUEUE_SPANS = 8192
"""Spans held for export at most; past it new spans are dropped (counted by the SDK's log)."""


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (``http://collector:4318``); a URL
    that already names ``/v1/traces`` is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class OtlpSpans:
    """A span sink (``core.tracing.set_span_sink``) exporting to one OTLP/HTTP endpoint."""

    def __init__(self, settings: Settings):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self.endpoint = traces_url(settings.otlp_endpoint)
        self._prefix = settings.otlp_service_prefix
        self._ReadableSpan, self._SpanContext = ReadableSpan, SpanContext
        self._Status, self._StatusCode = Status, StatusCode
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._kinds = {"server": SpanKind.SERVER, "producer": SpanKind.PRODUCER,
                       "consumer": SpanKind.CONSUMER, "internal": SpanKind.INTERNAL}
        self._scope = InstrumentationScope(SCOPE)
        self._Resource = Resource
        self._resources: dict[str, Any] = {}
        self._processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=self.endpoint, timeout=settings.otlp_timeout_s),
            max_queue_size=QUEUE_SPANS, schedule_delay_millis=EXPORT_DELAY_MS)

    def _resource(self, service: str) -> Any:
        res = self._resources.get(service)
        if res is None:
            res = self._resources[service] = self._Resource.create({
                "service.name": f"{self._prefix}-{service}", "service.namespace": self._prefix,
                "host.name": socket.gethostname(), "process.pid": os.getpid()})
        return res

    def __call__(self, span: FinishedSpan) -> None:
        """Queue one finished span for export (never blocks, never raises into the caller)."""
        try:
            ctx = self._SpanContext(int(span.trace_id, 16), int(span.span_id, 16), False,
                                    self._sampled)
            parent = None if span.parent_id is None else self._SpanContext(
                int(span.trace_id, 16), int(span.parent_id, 16), True, self._sampled)
            status = (self._Status(self._StatusCode.ERROR, span.error) if span.error
                      else self._Status(self._StatusCode.UNSET))
            self._processor.on_end(self._ReadableSpan(
                span.name, context=ctx, parent=parent, resource=self._resource(span.service),
                attributes=span.attributes, kind=self._kinds.get(span.kind),
                instrumentation_scope=self._scope, status=status,
                start_time=span.start_ns, end_time=span.end_ns))
        except Exception:  # tracing must never fail the work it traces
            log.debug("span not exported", exc_info=True)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Post every queued span now (blocking); False if it did not finish in time."""
        return self._processor.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Post what is queued, then stop the export thread (blocking)."""
        self._processor.shutdown()


_lock = threading.Lock()
_active: OtlpSpans | None = None
_users = 0


def install(settings: Settings) -> bool:
    """Export this process's spans if ``settings.otlp_endpoint`` is set (the first role to
    start installs the exporter, the others share it); False, importing nothing, if not.
    Pair each True with ``release()``."""
    global _active, _users
    if not settings.otlp_endpoint:
        return False
    with _lock:
        if _active is None:
            _active = OtlpSpans(settings)
            tracing.set_span_sink(_active, settings.otlp_sample_ratio)
            log.info("exporting spans to %s (sampling %.3g of new traces)", _active.endpoint,
                     settings.otlp_sample_ratio)
        elif _active.endpoint != traces_url(settings.otlp_endpoint):
            log.warning("spans already go to %s; %s ignored (one exporter per process)",
                        _active.endpoint, settings.otlp_endpoint)
        _users += 1
    return True


def active() -> OtlpSpans | None:
    """The process's exporter, if installed (tests flush it)."""
    return _active


async def release() -> None:
    """One role is done with the exporter; the last one flushes it and uninstalls it."""
    global _active, _users
    with _lock:
        _users -= 1
        if _users > 0 or _active is None:
            return
        exporter, _active = _active, None
        tracing.set_span_sink(None)
    await asyncio.to_thread(exporter.shutdown)
