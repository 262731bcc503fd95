"""Just enough PromQL to list the series selectors of a query: metric names and label names.

A tokenizer, not a parser: strings, ranges (``[5m]``) and Grafana variables are skipped; an
identifier followed by ``(``, ``by`` or ``without`` is a function or aggregation; the
parenthesised list after ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``
names labels; any other identifier that is not a keyword is a metric name, and the ``{...}``
after it holds its label matchers. Queries whose syntax this cannot follow raise ``ValueError``
rather than pass unread (promtool parses them for real in deploy/prometheus/check.sh).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_]\w*)
  | (?P<num>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},@])
""", re.VERBOSE)
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"} | _LABEL_LISTS


@dataclass
class Selector:
    metric: str
    labels: set[str] = field(default_factory=set)


@dataclass
class Query:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)
    """Labels named in by/without/on/ignoring/group_* lists."""

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def _label_list(toks: list[tuple[str, str]], i: int, into: set[str]) -> int:
    """Read ``( a, b )`` from ``toks[i]``; the index after it."""
    if i >= len(toks) or toks[i][1] != "(":
        return i  # group_left without a list
    i += 1
    while toks[i][1] != ")":
        kind, text = toks[i]
        if kind == "ident":
            into.add(text)
        elif text != ",":
            raise ValueError(f"unexpected {text!r} in a label list")
        i += 1
    return i + 1


def _matchers(toks: list[tuple[str, str]], i: int, into: set[str]) -> int:
    """Read ``{ name op "value", ... }`` from ``toks[i]``; the index after it."""
    i += 1
    while toks[i][1] != "}":
        kind, text = toks[i]
        if kind in ("ident", "str") and toks[i + 1][1] in ("=", "!=", "=~", "!~"):
            into.add(text.strip("\"'`"))
            if toks[i + 2][0] not in ("str", "var"):
                raise ValueError(f"label {text} is not matched against a string")
            i += 3
        elif text == ",":
            i += 1
        else:
            raise ValueError(f"unexpected {text!r} in a label matcher")
    return i + 1


def parse(expr: str) -> Query:
    """The selectors and grouping labels of one PromQL expression."""
    toks, query, i = tokens(expr), Query(), 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in _LABEL_LISTS:
            i = _label_list(toks, i + 1, query.grouping)
        elif kind == "ident" and text == "offset":
            i += 2
        elif kind == "ident" and nxt in ("(", "by", "without"):
            i += 1  # a function or an aggregation (``sum by (x) (...)``)
        elif kind == "ident" and text.lower() not in _KEYWORDS:
            sel = Selector(text)
            query.selectors.append(sel)
            i = _matchers(toks, i + 1, sel.labels) if nxt == "{" else i + 1
        elif text == "{":  # {__name__=~"..."}: names this check could not see
            raise ValueError(f"a selector without a metric name in {expr!r}")
        else:
            i += 1
    return query


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<expr>.*),)?\s*(?P<label>\w+)\s*\)\s*$")


def parse_grafana_variable(query: str) -> Query:
    """A Grafana variable's query: ``label_values(expr, label)`` or plain PromQL."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        return parse(query)
    parsed = parse(m["expr"]) if m["expr"] else Query()
    parsed.grouping.add(m["label"])
    return parsed
