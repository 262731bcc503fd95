"""``GET /v1/usage``: the calling tenant's usage by UTC day or by model.

What it reads is counted by the job-state scripts (:mod:`store.usage`), exactly once per item
and per job end; this module only picks the days, validates the range and adds up.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Iterable
from typing import Annotated

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from gateway import errors as E
from gateway.routes import WITH_AUTH, caller, get_and_head, options_handlers, problems, services
from schemas.api import FieldError, Problem
from schemas.usage import Outcomes, UsageGroup, UsageReport, UsageRow, UsageTotals
from store.usage import DayUsage, UsageLedger

DEFAULT_DAYS = 7
"""With no ``start``: the last 7 UTC days, ``end`` included."""
DATE_OR_TIME = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                r"([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$")
"""An RFC 3339 full-date or date-time; a date-time stands for its UTC day."""
_DATE_OR_TIME = re.compile(DATE_OR_TIME)


def max_days(retention_s: float) -> int:
    """The longest range: the days whose usage can still be kept (a day's usage lives one
    day longer than the retention of the jobs counted in it)."""
    return math.ceil(retention_s / 86400) + 1


def utc_day(value: str, name: str) -> dt.date:
    """The UTC day of an RFC 3339 date or date-time; 400 ``invalid_request`` otherwise."""
    try:
        if not _DATE_OR_TIME.match(value):
            raise ValueError
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC).date()
    except (ValueError, OverflowError):
        raise E.InvalidRequest(f"{name} must be an RFC 3339 date or date-time", errors=[
            FieldError(f"query:{name}", "not a valid RFC 3339 date or date-time")]) from None


def days_of(first: dt.date, last: dt.date) -> list[str]:
    """Every UTC day from ``first`` to ``last``, both included, as the usage keys spell them."""
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def window(start: str | None, end: str | None, now: float, retention_s: float
           ) -> tuple[dt.date, dt.date]:
    """The first and last UTC day of the range asked for: by default the last
    ``DEFAULT_DAYS`` days to ``end`` (today when absent). 400 when ``end`` is before
    ``start`` or the range is longer than the retention keeps."""
    last = utc_day(end, "end") if end is not None else dt.datetime.fromtimestamp(
        now, dt.UTC).date()
    if start is not None:
        first = utc_day(start, "start")
    else:
        try:
            first = last - dt.timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:
            first = dt.date.min
    if last < first:
        raise E.InvalidRequest("end is before start", errors=[
            FieldError("query:end", f"{last} is before start {first}")])
    days, limit = (last - first).days + 1, max_days(retention_s)
    if days > limit:
        raise E.InvalidRequest(
            f"the range spans {days} days; usage is kept {limit} days", errors=[
                FieldError("query:start", f"at most {limit} days before end (the retention)")])
    return first, last


def report(tenant: str, first: dt.date, last: dt.date, group_by: UsageGroup,
           rows: Iterable[DayUsage]) -> UsageReport:
    """Add up the (day, model) rows into the groups asked for and the totals; grouped by
    day, every day of the range has a row (zeros where nothing was counted)."""
    groups: dict[str, list[DayUsage]] = {}
    if group_by == UsageGroup.DAY:
        groups = {day: [] for day in days_of(first, last)}
    every: list[DayUsage] = []
    for row in rows:
        groups.setdefault(row.day if group_by == UsageGroup.DAY else row.model, []).append(row)
        every.append(row)
    data = [UsageRow(**{group_by.value: name}, **msgspec.structs.asdict(_summed(members)))
            for name, members in sorted(groups.items())]
    return UsageReport(tenant=tenant, start=first.isoformat(), end=last.isoformat(),
                       group_by=group_by, data=data, totals=_summed(every))


def _summed(rows: list[DayUsage]) -> UsageTotals:
    return UsageTotals(
        jobs=Outcomes(sum(r.jobs_succeeded for r in rows), sum(r.jobs_failed for r in rows)),
        items=Outcomes(sum(r.items_succeeded for r in rows),
                       sum(r.items_failed for r in rows)),
        input_tokens=sum(r.input_tokens for r in rows),
        inference_seconds=round(sum(r.inference_us for r in rows) / 1e6, 6))


_BAD_RANGE = ResponseSpec(Problem, media_type=E.PROBLEM_JSON, generate_examples=False,
                          description="`invalid_request`: not a date, `end` before `start`, or "
                          "a range longer than usage is kept (the pointer in `errors`)")


@get_and_head("/v1/usage", summary="The tenant's usage by UTC day or by model",
              responses={**problems(401, 429, 503), 400: _BAD_RANGE}, **WITH_AUTH)
async def get_usage(
    request: Request,
    start: Annotated[str | None, QueryParameter(
        required=False, pattern=DATE_OR_TIME, description="First UTC day (RFC 3339 date or "
        "date-time; a date-time means its UTC day). Default: 6 days before `end`")] = None,
    end: Annotated[str | None, QueryParameter(
        required=False, pattern=DATE_OR_TIME, description="Last UTC day, included. Default: "
        "today. At most the retention (INFERQ_RESULT_TTL_S) + 1 day after `start`")] = None,
    group_by: Annotated[UsageGroup, QueryParameter(
        required=False, description="One row per day of the range, or per model used")
    ] = UsageGroup.DAY,
) -> Response[UsageReport]:
    """Jobs by how they ended, items by status, input tokens and inference seconds, counted
    once when results are written; kept as long as the results."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    first, last = window(start, end, time.time(), svc.settings.result_ttl_s)
    rows = await UsageLedger(svc.redis).read(tenant.name, days_of(first, last))
    return Response(report(tenant.name, first, last, group_by, rows), headers=headers)


_HANDLERS = [get_usage]
USAGE_ROUTES = options_handlers(_HANDLERS) + _HANDLERS
