"""Real English text of real lengths: docstrings of the Python standard library.

Docstrings are read with ``ast`` from the stdlib sources (nothing is imported, so no module
side effects), split into paragraphs and sentences, and mixed into texts of varied length:
single sentences, paragraphs, and runs of paragraphs - roughly the spread an embedding
service sees (short queries to long passages).
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _docstrings(stdlib: Path) -> Iterator[str]:
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in path.parts[-2] or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def _paragraphs(doc: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", doc):
        lines = [ln.strip() for ln in block.splitlines()]
        if not lines or any(ln.startswith((">>>", "...", "$")) for ln in lines):
            continue  # doctest or shell examples: code, not prose
        text = " ".join(ln for ln in lines if ln)
        letters = sum(c.isalpha() for c in text)
        if len(text) >= 20 and letters > 0.6 * len(text):
            yield text


def stdlib_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """``n`` texts in a fixed pseudo-random arrival order (same ``seed``, same list)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paragraphs = [p for doc in _docstrings(stdlib) for p in _paragraphs(doc)]
    rng = random.Random(seed)
    rng.shuffle(paragraphs)
    texts: list[str] = []
    i = 0
    while len(texts) < n and i < len(paragraphs):
        kind = rng.random()
        if kind < 0.45:  # one sentence: query-like
            sentences = _SENTENCE_END.split(paragraphs[i])
            texts.append(rng.choice(sentences))
            i += 1
        elif kind < 0.85:  # one paragraph
            texts.append(paragraphs[i])
            i += 1
        else:  # a passage of several paragraphs
            k = rng.randint(2, 6)
            texts.append(" ".join(paragraphs[i : i + k]))
            i += k
    return texts
