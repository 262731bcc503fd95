"""The scheduler's tokenizer: HF ``encode_batch_fast`` against the exact pure-Python WordPiece
fast path (``models/wordpiece.py``), µs per text, single-threaded, on the same texts in one run.

Texts are ``bench.baselines.texts_for`` (real English: stdlib docstrings, ~143 characters,
~36 tokens). The fast path is timed cold (a fresh cache, holding only the vocabulary's whole
words, one pass: what a new scheduler pays on its first job) and warm (the same texts again);
``TextTokenizer.encode``, what the scheduler calls per chunk, is timed with ``fast`` on (cold,
then warm) and off. Each figure is the best of ``--repeat`` runs (the machine may be shared).
Every output is checked identical to HF before any figure is printed.

    python bench/bench_tokenize.py             # 10,000 texts, best of 3
    python bench/bench_tokenize.py --n 2000 --repeat 1    # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizers import Tokenizer

from bench.baselines import texts_for
from models.build import ensure_default_model
from models.config import CONFIG_FILE, TOKENIZER_FILE, load_config
from models.tokenize import Encoded, ItemRejection, TextTokenizer
from models.wordpiece import WordPiece

T = TypeVar("T")


def best(fns: list[Callable[[], T]]) -> tuple[float, T]:
    """Fewest seconds any of ``fns`` took (this machine is shared), and the last output."""
    times = []
    for fn in fns:
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    """Time every path on the same texts, check they agree, print µs/text and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="texts to tokenize")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    # Read by tokenizers at each call: single-threaded, as the scheduler role runs it.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"

    version_dir = ensure_default_model()
    cfg = load_config(version_dir / CONFIG_FILE)
    texts = texts_for(args.n)
    hf = Tokenizer.from_file(str(version_dir / TOKENIZER_FILE))
    hf.no_padding()
    hf.enable_truncation(cfg.max_seq_len)
    hf.encode_batch_fast(texts[:100])  # first-call set-up out of the timing

    def fresh_fast() -> WordPiece:
        wp = WordPiece.from_tokenizer_json(hf.to_str())
        assert wp is not None, "the default model's tokenizer should take the fast path"
        return wp

    def fast_pass(wp: WordPiece) -> Callable[[], list[tuple[list[int], bool] | None]]:
        return lambda: [wp.encode(t) for t in texts]

    def on_pass(tok: TextTokenizer) -> Callable[[], list[Encoded | ItemRejection]]:
        return lambda: tok.encode(texts)

    r = args.repeat
    t_hf, encodings = best([lambda: hf.encode_batch_fast(texts)] * r)
    # Cold: a fresh cache each run; building it (~10 ms, once per model) is not timed.
    fasts = [fresh_fast() for _ in range(r)]
    t_cold, cold = best([fast_pass(wp) for wp in fasts])
    t_warm, warm = best([fast_pass(fasts[-1])] * r)
    declined = sum(c is None for c in cold)
    for enc, c, w in zip(encodings, cold, warm, strict=True):
        assert c == w and (c is None or c == (list(enc.ids), bool(enc.overflowing))), c

    off = TextTokenizer.from_dir(version_dir, cfg, fast=False)
    t_off, out_off = best([on_pass(off)] * r)
    ons = [TextTokenizer.from_dir(version_dir, cfg, fast=True) for _ in range(r)]
    t_on_cold, out_on = best([on_pass(on) for on in ons])
    t_on_warm, out_on_warm = best([on_pass(ons[-1])] * r)
    assert out_on == out_off == out_on_warm, "fast path and HF disagree"

    per = 1e6 / len(texts)
    print(f"{len(texts)} texts, mean {sum(map(len, texts)) / len(texts):.0f} chars; "
          f"fast path declined {declined} (non-ASCII or an added token), "
          f"cache {fasts[-1].cache_size} entries; outputs identical; best of {r} runs")
    rows = [
        ("HF encode_batch_fast", t_hf),
        ("WordPiece.encode, cold cache", t_cold),
        ("WordPiece.encode, warm cache", t_warm),
        ("TextTokenizer.encode fast=False", t_off),
        ("TextTokenizer.encode fast=True, cold", t_on_cold),
        ("TextTokenizer.encode fast=True, warm", t_on_warm),
    ]
    for name, secs in rows:
        print(f"  {name:<38} {secs * per:7.1f} µs/text")
    print(f"  ratio HF / fast path:      cold {t_hf / t_cold:.1f}x   warm {t_hf / t_warm:.1f}x")
    print(f"  ratio TextTokenizer off/on: cold {t_off / t_on_cold:.1f}x   "
          f"warm {t_off / t_on_warm:.1f}x")


if __name__ == "__main__":
    main()
