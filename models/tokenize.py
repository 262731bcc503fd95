"""Text to token ids with the model's own ``tokenizer.json``, rejecting unusable items.

Decisions (pinned by tests/models/test_tokenize.py):

- empty, whitespace-only, or any text that tokenizes to nothing but [CLS]/[SEP] (control
  characters, zero-width spaces, or "[CLS]"/"[SEP]" written out) is rejected with
  ``empty_text``: the model would return the same meaningless vector for all of them, which
  is almost always a client bug, so the item fails and the rest of the job goes on;
- text that is not encodable as UTF-8 (lone surrogates) is rejected with ``invalid_text``;
- text longer than ``max_seq_len`` tokens is truncated and flagged ``truncated=True``;
- ASCII text goes through ``models.wordpiece`` (``fast=True``, the default), an exact
  pure-Python copy of the model's BERT WordPiece with a word cache: HF ``encode_batch_fast``
  costs ~65 µs a real 143-character text single-threaded, ~60% of the scheduler's CPU; the
  fast path ~13 µs on a cold cache and ~6.5 µs on a warm one (``bench/bench_tokenize.py``).
  It is bit-identical to HF by construction and by test (tests/models/test_wordpiece.py): it
  is only on when the configured tokenizer's JSON is exactly the BERT shape it reproduces, and
  it declines, text by text, anything it cannot prove (non-ASCII, an added token such as
  ``[CLS]`` in the text), which HF then encodes. Unlike HF it holds the GIL while it runs: the
  caller's event loop gets it back every switch interval (5 ms), a fair price for 5-10x less
  CPU.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from tokenizers import Tokenizer

from models.config import TOKENIZER_FILE, ModelConfig
from models.errors import ModelLoadError
from models.wordpiece import WordPiece
from schemas.errors import ErrorCode, ItemError


class Encoded(msgspec.Struct, frozen=True):
    """Token ids of one text, [CLS]/[SEP] included, at most ``max_seq_len`` long."""

    ids: list[int]
    truncated: bool = False

    @property
    def length(self) -> int:
        """Tokens, specials included: what the bucketing pays for."""
        return len(self.ids)


class ItemRejection(msgspec.Struct, frozen=True):
    """Why one text cannot be embedded; ``code`` is an ``ErrorCode`` value."""

    code: str
    message: str

    def to_item_error(self) -> ItemError:
        """The rejection as the item's error in the results."""
        return ItemError.of(ErrorCode(self.code), self.message)


class TextTokenizer:
    """A model's tokenizer set to truncate at ``max_seq_len`` and never pad; ``fast=False``
    sends every text to HF (for comparison: the results are the same)."""

    def __init__(self, tokenizer: Tokenizer, config: ModelConfig, fast: bool = True) -> None:
        tokenizer.no_padding()  # padding is the batcher's job (to the bucket length)
        tokenizer.enable_truncation(config.max_seq_len)
        self._tok = tokenizer
        self.max_seq_len = config.max_seq_len
        # Built from the configured tokenizer's own JSON, so the shape it checks is exactly
        # what HF runs (truncation and padding included); None when that is not plain BERT.
        self._fast = WordPiece.from_tokenizer_json(tokenizer.to_str()) if fast else None
        self._frame = frozenset(tokenizer.encode("").ids)
        """The ids the template adds to every text ([CLS], [SEP]): a text whose every id is
        one of them — written out in the text or not — has no content."""

    @property
    def fast(self) -> bool:
        """Whether the exact pure-Python fast path is on for this tokenizer."""
        return self._fast is not None

    @classmethod
    def from_dir(cls, version_dir: Path, config: ModelConfig, fast: bool = True) -> TextTokenizer:
        """Load ``<version_dir>/tokenizer.json``; ``ModelLoadError`` when missing or corrupt."""
        path = Path(version_dir) / TOKENIZER_FILE
        if not path.is_file():
            raise ModelLoadError(path, "tokenizer file is missing")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ModelLoadError(path, f"corrupt tokenizer ({exc})") from exc
        return cls(tokenizer, config, fast=fast)

    def encode(self, texts: list[str]) -> list[Encoded | ItemRejection]:
        """Encode each text, in order: an ``Encoded`` or the ``ItemRejection`` for that item."""
        results: list[Encoded | ItemRejection | None] = [None] * len(texts)
        valid: list[int] = []  # the texts for HF: all, or those the fast path declined
        fast = self._fast
        for i, text in enumerate(texts):
            rejection = _precheck(text)
            if rejection is not None:
                results[i] = rejection
            elif fast is None or (got := fast.encode(text)) is None:
                valid.append(i)
            elif len(got[0]) == 2:  # [CLS] [SEP] and nothing else
                results[i] = _no_tokens()
            else:
                results[i] = Encoded(got[0], truncated=got[1])
        if not valid:
            return results  # type: ignore[return-value]
        # ``encode_batch_fast`` releases the GIL for the whole call (``encode`` per text holds
        # it between texts), so a caller's event loop runs on while a worker thread tokenizes,
        # and skips the character offsets we never use (79 vs 113 µs a text). It fans out to
        # every core unless TOKENIZERS_PARALLELISM=false, which the scheduler role sets: on a
        # shared CPU machine the fan-out stalls the inference next door.
        encodings = self._tok.encode_batch_fast([texts[i] for i in valid])
        for i, enc in zip(valid, encodings, strict=True):
            if self._frame.issuperset(enc.ids):  # e.g. "[CLS]": [CLS] [CLS] [SEP]
                results[i] = _no_tokens()
            else:
                results[i] = Encoded(list(enc.ids), truncated=bool(enc.overflowing))
        return results  # type: ignore[return-value]


def _no_tokens() -> ItemRejection:
    """The rejection of a text that tokenizes to nothing but [CLS]/[SEP]."""
    return ItemRejection(
        ErrorCode.EMPTY_TEXT.value,
        "text has no tokens (only whitespace, control or zero-width characters)",
    )


def _precheck(text: object) -> ItemRejection | None:
    """Cheap checks before tokenizing: a string, non-blank, valid UTF-8."""
    if not isinstance(text, str):
        return ItemRejection(
            ErrorCode.INVALID_TEXT.value, f"text must be a string, got {type(text).__name__}"
        )
    if not text.strip():
        return ItemRejection(ErrorCode.EMPTY_TEXT.value, "text is empty or whitespace only")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return ItemRejection(
                ErrorCode.INVALID_TEXT.value,
                f"text is not valid Unicode (lone surrogate at position {exc.start})",
            )
    return None
