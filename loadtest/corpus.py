"""Real-length English sentences for load-test inputs, taken from the standard library's docstrings.

Uniform synthetic strings all land in one sequence-length bucket and tokenize unrealistically, so
they flatter the batch former. Docstrings are varied English prose of natural lengths and ship
with every Python, so the load test needs no data download. Sources are parsed with ``ast``
(nothing is imported or executed); where a distribution ships no sources, docstrings of the
already imported standard-library modules are read with ``inspect.getdoc`` instead.
"""

from __future__ import annotations

import ast
import inspect
import random
import re
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

MIN_SENTENCES = 500
"""Fewer sentences than this from sources and the imported-module fallback is added too."""
MAX_FILES = 400
"""Bounds start-up time: the top-level stdlib modules parse in a second or two."""

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_MARKUP = re.compile(r"^(>>>|\.\.\.|[-=~^*]{3,}|:\w+:|\.\. )")


def _prose_lines(doc: str) -> str:
    """Drop doctest, reST directives and underlines; join what is left into one paragraph."""
    kept = [ln.strip() for ln in doc.splitlines() if ln.strip() and not _MARKUP.match(ln.strip())]
    return " ".join(kept)


def _is_sentence(s: str) -> bool:
    """English-looking prose: long enough to be a sentence, mostly letters and spaces."""
    if not 20 <= len(s) <= 600 or len(s.split()) < 4:
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in s)
    return letters / len(s) >= 0.85 and s[0].isupper()


def sentences_from(doc: str | None) -> list[str]:
    """The prose sentences of one docstring."""
    if not doc:
        return []
    return [s for s in _SPLIT.split(_prose_lines(doc)) if _is_sentence(s)]


def _docstrings_of_source(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(
        n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


def _from_sources() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:MAX_FILES]
    return [s for f in files for d in _docstrings_of_source(f) for s in sentences_from(d)]


def _from_imported_modules() -> list[str]:
    out: list[str] = []
    for name in sorted(sys.stdlib_module_names & set(sys.modules)):
        module = sys.modules[name]
        out += sentences_from(inspect.getdoc(module))
        for _, member in inspect.getmembers(module, lambda m: inspect.isclass(m) or
                                            inspect.isfunction(m)):
            out += sentences_from(inspect.getdoc(member))
    return out


@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Unique sentences in a stable order (so two runs draw from the same population)."""
    found = _from_sources()
    if len(found) < MIN_SENTENCES:
        found += _from_imported_modules()
    unique = tuple(dict.fromkeys(found))
    if not unique:
        raise RuntimeError("no docstring sentences found in this Python's standard library")
    return unique


def item_text(rng: random.Random) -> str:
    """One input: usually one sentence, sometimes a short paragraph, so lengths span buckets."""
    pool = sentences()
    n = rng.choices((1, 2, 4, 8), weights=(60, 25, 10, 5))[0]
    start = rng.randrange(len(pool))
    return " ".join(pool[(start + i) % len(pool)] for i in range(n))
