"""JSON log lines (core.logs) carry the fields bound to the task's log context
(core.tracing.bound), and a field given explicitly with ``extra=`` wins."""

from __future__ import annotations

import json
import logging

from core.logs import JsonFormatter
from core.tracing import bound

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_log_lines_carry_the_bound_fields_and_explicit_ones_win() -> None:
    fmt = JsonFormatter()
    rec = logging.LogRecord("inferq.x", logging.INFO, __file__, 1, "hello", None, None)
    with bound(request_id="r1", trace_id=TRACE, job_id="j1"):
        doc = json.loads(fmt.format(rec))
        rec.job_id = "j2"
        explicit = json.loads(fmt.format(rec))
    after = json.loads(fmt.format(logging.LogRecord("inferq.x", logging.INFO, __file__, 1,
                                                    "bye", None, None)))
    assert (doc["request_id"], doc["trace_id"], doc["job_id"]) == ("r1", TRACE, "j1")
    assert explicit["job_id"] == "j2"
    assert "request_id" not in after and "trace_id" not in after
