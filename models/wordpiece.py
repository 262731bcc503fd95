"""An exact pure-Python fast path for BERT WordPiece tokenizers, on ASCII text.

Why: the scheduler spent ~60% of its CPU in HuggingFace ``tokenizers`` (``encode_batch_fast``,
~67 µs a text on real 143-character texts, single-threaded). Real text repeats its words, so
here a text is lowercased and split on whitespace in C, and a bounded cache, seeded with the
vocabulary's whole words, maps each whitespace-free chunk ("word," "(the") to its ids with one
dict look-up; only unseen chunks run the regex and the WordPiece loop. That is ~5x less CPU
on a cold cache and ~10x on a warm one (``bench/bench_tokenize.py``).

How exactness is guaranteed — the fast path only runs where every step provably equals HF's:

- the tokenizer: ``from_tokenizer_json`` takes the *configured* tokenizer's own JSON (after
  ``no_padding`` + ``enable_truncation``) and returns None unless the normalizer,
  pre-tokenizer, model, post-processor, truncation and padding are exactly the BERT shape
  reproduced here (BertNormalizer with clean_text and lowercase, BertPreTokenizer, WordPiece,
  ``[CLS] $A [SEP]`` template, right-hand LongestFirst truncation without stride, no padding);
- the text: ``encode`` declines (None: the caller uses HF) any non-ASCII text and any text
  that could hold an added token, which HF matches before normalizing: one whose raw text
  contains the content of an unnormalized added token (``[CLS]``, ``[MASK]``... in BERT, all
  of them; ``[cls]`` is not one), or the first character, in either case, of a normalized one;
- for the rest, the rules are HF's own, checked against HF by tests/models/test_wordpiece.py:
  clean_text deletes ASCII control characters except ``\\t\\n\\r`` (these, like ``\\x0b``,
  ``\\x0c`` and ``\\x1c``-``\\x1f``, are deleted, not spaces), lowercase, then words are runs of
  ``[a-z0-9]`` and every other printable character (all of them BERT punctuation) is a word of
  its own; WordPiece is greedy longest-match-first with the continuation prefix, a word longer
  than ``max_input_chars_per_word`` or with an unmatched remainder is one ``[UNK]``; the
  content is cut to ``max_seq_len - 2`` ids and ``truncated`` is True exactly when it was cut.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PUNCT = r"!-/:-@\[-`{-~"  # ASCII 33-47, 58-64, 91-96, 123-126: every printable non-alnum
_WORD = re.compile(rf"[a-z0-9]+|[{_PUNCT}]")
# BERT's clean_text deletes these (Unicode category Cc) and maps \t \n \r to spaces, which the
# whitespace split treats as spaces anyway, so only deletions need a pass (and only if present).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DELETE = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_BERT_NORMALIZER = {
    "type": "BertNormalizer",
    "clean_text": True,
    "handle_chinese_chars": True,
    "strip_accents": None,
    "lowercase": True,
}
CACHE_MAX_ENTRIES = 200_000
"""Chunks kept in the chunk → ids cache before it is cleared (back to its seed)."""
CACHE_KEY_MAX_CHARS = 32
"""Longer chunks are composed from their (cached) words each time: this bounds an entry's size,
so a full cache stays under ~90 MB even for adversarial text (~35 MB for real text)."""


class WordPiece:
    """BERT WordPiece tokenization of ASCII text, bit-identical to HF where it accepts a text."""

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        unk_id: int,
        prefix: str,
        max_word_chars: int,
        cls_id: int,
        sep_id: int,
        max_seq_len: int,
        added: tuple[tuple[str, tuple[str, ...] | None], ...],
        cache_max: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self._vocab = vocab
        self._unk = (unk_id,)
        self._prefix = prefix
        self._max_word_chars = max_word_chars
        self._cls = cls_id
        self._sep = sep_id
        self._max_content = max_seq_len - 2
        self._added = added
        self._longest = max(map(len, vocab), default=0)
        self.cache_max = cache_max
        # A word that is itself a vocabulary entry is its own single piece (the first, longest
        # match), so these seed the cache: a new scheduler's first job already hits on most
        # words. Only when they fill at most half of it, so the bound stays meaningful.
        seed = {w: (i,) for w, i in vocab.items()
                if len(w) <= max_word_chars and _WORD.fullmatch(w) is not None}
        self._seed = seed if len(seed) <= cache_max // 2 else {}
        self._cache: dict[str, tuple[int, ...]] = dict(self._seed)

    @classmethod
    def from_tokenizer_json(cls, text: str, cache_max: int = CACHE_MAX_ENTRIES) -> WordPiece | None:
        """The fast path for a configured tokenizer's JSON (``Tokenizer.to_str()``), or None
        when any part of it is not exactly the BERT shape this module reproduces."""
        try:
            return _parse(json.loads(text), cache_max)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return None

    @property
    def cache_size(self) -> int:
        """Entries now in the chunk → ids cache, the seed of vocabulary words included."""
        return len(self._cache)

    def encode(self, text: str) -> tuple[list[int], bool] | None:
        """``(ids with [CLS]/[SEP], truncated)`` for ``text``, or None when declined (non-ASCII
        or possibly holding an added token). Only [CLS]/[SEP] (2 ids) means no content."""
        if not text.isascii():
            return None
        for first, contents in self._added:  # cheap first-character test, then the contents
            if first in text and (contents is None or any(c in text for c in contents)):
                return None
        if not text.isprintable() and _CONTROL.search(text) is not None:
            text = text.translate(_DELETE)
        # Python's whitespace split, on cleaned ASCII, is BERT's (space, \t, \n, \r): the
        # chunks ("word," "(the") are cached whole, so a known text costs one look-up a chunk.
        get = self._cache.get
        ids = [self._cls]
        for chunk in text.lower().split():
            ids += get(chunk) or self._chunk(chunk)
        if len(ids) > self._max_content + 1:
            del ids[self._max_content + 1 :]
            ids.append(self._sep)
            return ids, True
        ids.append(self._sep)
        return ids, False

    def _chunk(self, chunk: str) -> tuple[int, ...]:
        """Ids of a whitespace-free chunk: its words' WordPiece ids in order, cached when short."""
        if chunk.isalnum() or len(chunk) == 1:  # one word: [a-z0-9]+ or one punctuation mark
            ids = self._unk if len(chunk) > self._max_word_chars else self._pieces(chunk)
        else:
            words = _WORD.findall(chunk)
            if sum(map(len, words)) != len(chunk):  # impossible on cleaned ASCII: fail loudly
                raise AssertionError(f"characters outside BERT's ASCII classes in {chunk!r}")
            get, out = self._cache.get, []
            for word in words:
                out += get(word) or self._chunk(word)
            ids = tuple(out)
        if len(chunk) <= CACHE_KEY_MAX_CHARS:
            if len(self._cache) >= self.cache_max:
                self._cache.clear()  # in place: ``encode`` holds its ``get``
                self._cache.update(self._seed)
            self._cache[chunk] = ids
        return ids

    def _pieces(self, word: str) -> tuple[int, ...]:
        """HF's WordPiece loop: the longest vocab piece at each start, else one [UNK]."""
        vocab, out, start, n = self._vocab, [], 0, len(word)
        while start < n:
            prefix = self._prefix if start else ""
            end = min(n, start + self._longest - len(prefix))
            while end > start:
                piece = vocab.get(prefix + word[start:end])
                if piece is not None:
                    out.append(piece)
                    break
                end -= 1
            else:
                return self._unk
            start = end
        return tuple(out)


def _parse(tok: dict[str, Any], cache_max: int) -> WordPiece | None:
    """Every shape check of ``from_tokenizer_json``; None at the first mismatch."""
    model, post = tok["model"], tok["post_processor"]
    if (
        tok["normalizer"] != _BERT_NORMALIZER
        or tok["pre_tokenizer"] != {"type": "BertPreTokenizer"}
        or tok.get("padding") is not None
        or model["type"] != "WordPiece"
        or post["type"] != "TemplateProcessing"
    ):
        return None
    trunc = tok["truncation"]
    if trunc is None or {k: v for k, v in trunc.items() if k != "max_length"} != {
        "direction": "Right", "strategy": "LongestFirst", "stride": 0,
    }:
        return None
    max_seq_len = trunc["max_length"]
    vocab: dict[str, int] = model["vocab"]
    prefix, unk = model["continuing_subword_prefix"], model["unk_token"]
    max_word_chars = model["max_input_chars_per_word"]
    if not (isinstance(max_seq_len, int) and max_seq_len >= 3 and unk in vocab and prefix
            and isinstance(max_word_chars, int)):
        return None
    special = _template_specials(post)
    if special is None:
        return None
    added = _added_token_checks(tok["added_tokens"])
    if added is None:
        return None
    return WordPiece(
        vocab, unk_id=vocab[unk], prefix=prefix, max_word_chars=max_word_chars,
        cls_id=special[0], sep_id=special[1], max_seq_len=max_seq_len,
        added=added, cache_max=cache_max,
    )


def _template_specials(post: dict[str, Any]) -> tuple[int, int] | None:
    """The ids around ``$A`` when the single template is exactly ``X $A Y`` (one id each)."""
    single = post["single"]
    if len(single) != 3 or single[1] != {"Sequence": {"id": "A", "type_id": 0}}:
        return None
    ids = []
    for item in (single[0], single[2]):
        name = item["SpecialToken"]["id"]
        if item["SpecialToken"]["type_id"] != 0 or len(post["special_tokens"][name]["ids"]) != 1:
            return None
        ids.append(post["special_tokens"][name]["ids"][0])
    return ids[0], ids[1]


def _added_token_checks(
    added: list[dict[str, Any]],
) -> tuple[tuple[str, tuple[str, ...] | None], ...] | None:
    """``(first character, contents)`` pairs: an ASCII text holding the character and one of the
    contents (or just the character, for None) may hold an added token. Unnormalized tokens
    match the raw text exactly; normalized ones match after cleaning and lowercasing, so any
    text with their first character in either case is declined. None (fast path off) when a
    token is empty, or normalized and not plain printable ASCII."""
    exact: dict[str, set[str]] = {}
    loose: set[str] = set()
    for token in added:
        content: str = token["content"]
        if not content:
            return None
        if token["normalized"]:
            if not (content.isascii() and content.isprintable()):
                return None
            loose |= {content[0].lower(), content[0].upper()}
        elif content.isascii():  # a non-ASCII content cannot occur in an ASCII text
            exact.setdefault(content[0], set()).add(content)
    checks: list[tuple[str, tuple[str, ...] | None]] = [(c, None) for c in sorted(loose)]
    checks += [(c, tuple(sorted(v))) for c, v in sorted(exact.items()) if c not in loose]
    return tuple(checks)
