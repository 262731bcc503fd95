"""JSON-lines logging: one object per line with the fields operators filter on
(``request_id``, ``job_id``, ``tenant``, ``trace_id``, ``batch_id``: from ``extra=`` or the
task's log context, see ``core.tracing.bound``)."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

from core.tracing import LOG_FIELDS, log_context

_ENC = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the bound context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (an explicit ``extra=`` field wins)."""
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        bound = log_context()
        for k in LOG_FIELDS:  # an explicit ``extra=`` wins over the task's bound context
            v = getattr(record, k, None) or bound.get(k)
            if v is not None:
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _ENC.encode(doc).decode()


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process (entry points only); chatty libraries are
    held at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("nats", "uvicorn.error", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
