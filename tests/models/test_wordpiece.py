"""The pure-Python WordPiece fast path gives HF's exact ids, or declines the text."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from bench.baselines import texts_for
from models.config import ModelConfig
from models.tokenize import TextTokenizer
from models.wordpiece import CACHE_KEY_MAX_CHARS, WordPiece

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CONTROLS = [chr(c) for c in [*range(0x20), 0x7F]]
View = tuple[list[int], bool] | str  # ids and truncated, or "empty" (only [CLS]/[SEP])


def configured(tokenizer_json: str, max_seq_len: int) -> Tokenizer:
    """An HF tokenizer set up as ``TextTokenizer`` sets it up."""
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.enable_truncation(max_seq_len)
    return tok


@pytest.fixture(scope="module")
def raw_json(minilm_dir: Path) -> dict[str, Any]:
    return json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hf(raw_json: dict[str, Any], minilm_config: ModelConfig) -> Tokenizer:
    return configured(json.dumps(raw_json), minilm_config.max_seq_len)


@pytest.fixture(scope="module")
def wp(hf: Tokenizer) -> WordPiece:
    fast = WordPiece.from_tokenizer_json(hf.to_str())
    assert fast is not None
    return fast


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    return texts_for(20_000)


def hf_views(hf: Tokenizer, texts: list[str]) -> list[View]:
    """What ``TextTokenizer.encode`` derives from HF: ids and overflow, or empty."""
    return [
        "empty" if all(e.special_tokens_mask) else (list(e.ids), bool(e.overflowing))
        for e in hf.encode_batch_fast(texts)
    ]


def fast_view(wp: WordPiece, text: str) -> View | None:
    got = wp.encode(text)
    if got is None:
        return None
    return "empty" if len(got[0]) == 2 else got


def assert_same_or_declined(hf: Tokenizer, wp: WordPiece, texts: list[str]) -> list[str]:
    """Every text the fast path accepts matches HF exactly; returns the declined texts."""
    declined, mismatches = [], []
    for text, expected in zip(texts, hf_views(hf, texts), strict=True):
        got = fast_view(wp, text)
        if got is None:
            declined.append(text)
        elif got != expected:
            mismatches.append((text, got, expected))
    assert mismatches == [], f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
    return declined


def may_hold_added_token(text: str) -> bool:
    return not text.isascii() or any(s in text for s in SPECIALS)


def garble(text: str, rng: random.Random) -> str:
    """Punctuation, digits, tabs, newlines and control characters mixed into a text."""
    extras = [*string.punctuation.replace("[", ""), *string.digits, "\t", "\n", "\r", *CONTROLS]
    out = []
    for ch in text:
        out.append(ch)
        if rng.random() < 0.08:
            out.append(rng.choice(extras))
    return "".join(out)


def test_real_texts_upper_cased_and_garbled_match_hf(
    hf: Tokenizer, wp: WordPiece, real_texts: list[str]
) -> None:
    rng = random.Random(7)
    variants = real_texts + [t.upper() for t in real_texts] + [garble(t, rng) for t in real_texts]
    declined = assert_same_or_declined(hf, wp, variants)
    assert declined == [t for t in variants if may_hold_added_token(t)]
    assert len(declined) < 0.01 * len(variants)  # real English text takes the fast path


def fuzz_texts(rng: random.Random, max_content: int) -> list[str]:
    """ASCII text of every awkward kind: random bytes, long and unknown words, added tokens,
    and texts right at the truncation edge."""
    printable = string.printable[:-5]  # without the \t\n\r\x0b\x0c the controls cover
    alphabet = printable * 4 + " " * 60 + "".join(CONTROLS)
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 200))) for _ in range(12_000)]
    for _ in range(3_000):  # words around max_input_chars_per_word (100)
        word = "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(90, 130)))
        texts.append(f"{rng.choice(['', 'a ', '(', 'x,'])}{word}{rng.choice(['', ' b', '.', '!'])}")
    for _ in range(3_000):  # made-up words: runs of rare word-pieces
        texts.append(" ".join(
            "".join(rng.choices("qzxjvkw", k=rng.randint(3, 40))) for _ in range(rng.randint(1, 8))
        ))
    for _ in range(1_000):  # added tokens in any case and company
        parts = [rng.choice([s, s.lower(), s.title(), s[1:], s[:-1], " " + s + " "])
                 for s in rng.choices(SPECIALS, k=rng.randint(1, 3))]
        texts.append(rng.choice(["", "a ", "x"]).join(parts) + rng.choice(["", " tail", "!"]))
    for delta in (-2, -1, 0, 1, 2):  # content tokens right at max_seq_len - 2
        k = max_content + delta
        texts += ["a " * k, "!" * k, "a" + "." * (k - 1), "hello world " * (k // 2) + "x" * (k % 2),
                  "Ab" * k, "\t".join(["end"] * k) + "\x00"]
    while len(texts) < 20_500:
        texts.append(" ".join(rng.choices(["the", "Model", "batch", "##", "1,000", "e.g.", "\x7f"],
                                          k=rng.randint(1, 30))))
    return texts


def test_twenty_thousand_random_ascii_texts_match_hf(
    hf: Tokenizer, wp: WordPiece, minilm_config: ModelConfig
) -> None:
    texts = fuzz_texts(random.Random(20_000), minilm_config.max_seq_len - 2)
    assert len(texts) >= 20_000
    declined = assert_same_or_declined(hf, wp, texts)
    assert declined == [t for t in texts if may_hold_added_token(t)]
    assert "[cls] [sep]" not in declined and wp.encode("[cls] [sep]") is not None


def test_every_vocabulary_piece_alone_and_as_a_continuation_matches_hf(
    hf: Tokenizer, wp: WordPiece, raw_json: dict[str, Any]
) -> None:
    pieces = [p for p in raw_json["model"]["vocab"] if p.isascii()]
    words = [p[2:] if p.startswith("##") else p for p in pieces]
    words += ["q" + w for w in words] + [w + w for w in words]  # continuations, longest first
    texts = [" ".join(words[i : i + 40]) for i in range(0, len(words), 40)]
    assert assert_same_or_declined(hf, wp, texts) == [t for t in texts if may_hold_added_token(t)]


def test_truncation_edge(wp: WordPiece, minilm_config: ModelConfig) -> None:
    n = minilm_config.max_seq_len - 2
    got = [wp.encode("a " * k) for k in (n - 1, n, n + 1)]  # n content ids fit, not n + 1
    assert [(len(ids), truncated) for ids, truncated in got] == [  # type: ignore[misc]
        (n + 1, False), (n + 2, False), (n + 2, True)]


def test_unmatched_remainder_and_word_limit_follow_hf(
    raw_json: dict[str, Any], minilm_config: ModelConfig
) -> None:
    # This vocabulary covers every ASCII character, so to reach HF's "no piece matches the
    # rest of the word → one [UNK]" rule, take some continuation pieces away.
    changed = json.loads(json.dumps(raw_json))
    for piece in ("##q", "##z", "##7"):
        del changed["model"]["vocab"][piece]
    changed["model"]["max_input_chars_per_word"] = 12
    hf = configured(json.dumps(changed), minilm_config.max_seq_len)
    wp = WordPiece.from_tokenizer_json(hf.to_str())
    assert wp is not None
    rng = random.Random(3)
    texts = [" ".join("".join(rng.choices("aqz7.bx", k=rng.randint(1, 15))) for _ in range(5))
             for _ in range(3_000)]
    assert assert_same_or_declined(hf, wp, texts) == []
    assert wp.encode("aq") == ([101, 100, 102], False)


def test_tokenizer_encode_falls_back_per_text_in_order(
    wp: WordPiece, minilm_dir: Path, minilm_config: ModelConfig
) -> None:
    fast = TextTokenizer.from_dir(minilm_dir, minilm_config)
    slow = TextTokenizer.from_dir(minilm_dir, minilm_config, fast=False)
    assert fast.fast and not slow.fast
    texts = ["héllo wörld", "plain text", "[CLS] hi", "", "naïve [MASK]", "\x00\x01", "x\ud800",
             "Ω", "[cls]", "a\u200bb", "ok!", " [SEP] ", "中文 text", "end", "   "]
    assert [t for t in texts if wp.encode(t) is None] == [
        "héllo wörld", "[CLS] hi", "naïve [MASK]", "x\ud800", "Ω", "a\u200bb", " [SEP] ",
        "中文 text"]
    assert fast.encode(texts) == slow.encode(texts)
    assert fast.encode(texts[::-1]) == slow.encode(texts)[::-1]


@pytest.mark.parametrize(
    "change",
    [
        lambda j: j["normalizer"].update(lowercase=False),
        lambda j: j["normalizer"].update(clean_text=False),
        lambda j: j.update(normalizer={"type": "Sequence", "normalizers": [j["normalizer"]]}),
        lambda j: j.update(pre_tokenizer={"type": "Whitespace"}),
        lambda j: j["post_processor"]["single"].pop(),
        lambda j: j["model"].update(type="BPE", merges=[]),
        lambda j: j["added_tokens"].append({**j["added_tokens"][0], "id": 1, "content": "é",
                                            "normalized": True}),
    ],
    ids=["lowercase-off", "no-clean-text", "sequence-normalizer", "whitespace-pre-tokenizer",
         "no-sep", "bpe", "normalized-non-ascii-token"],
)
def test_any_other_tokenizer_shape_turns_the_fast_path_off(
    change: Any, raw_json: dict[str, Any], tmp_path: Path, minilm_config: ModelConfig
) -> None:
    changed = json.loads(json.dumps(raw_json))
    change(changed)
    (tmp_path / "tokenizer.json").write_text(json.dumps(changed), encoding="utf-8")
    tok = TextTokenizer.from_dir(tmp_path, minilm_config)
    assert not tok.fast
    assert tok.encode(["Hello World"])[0] is not None  # HF alone still serves


def test_other_truncation_or_padding_turns_it_off(hf: Tokenizer) -> None:
    base = json.loads(hf.to_str())
    for key, value in [("truncation", {**base["truncation"], "direction": "Left"}),
                       ("truncation", {**base["truncation"], "stride": 4}),
                       ("truncation", None),
                       ("padding", {"strategy": "BatchLongest", "direction": "Right"})]:
        assert WordPiece.from_tokenizer_json(json.dumps({**base, key: value})) is None, key
    assert WordPiece.from_tokenizer_json("not json") is None


def test_the_cache_stays_bounded_and_exact(hf: Tokenizer) -> None:
    wp = WordPiece.from_tokenizer_json(hf.to_str(), cache_max=50)
    assert wp is not None
    rng = random.Random(5)
    texts = [" ".join("".join(rng.choices("abcdefgh,.", k=rng.randint(1, 40))) for _ in range(20))
             for _ in range(300)]
    sizes = []
    for text in texts:
        wp.encode(text)
        sizes.append(wp.cache_size)
    assert max(sizes) <= 50 and min(sizes[10:]) < 50  # it filled up and was cleared
    assert assert_same_or_declined(hf, wp, texts) == []
    seeded = WordPiece.from_tokenizer_json(hf.to_str(), cache_max=70_000)
    assert seeded is not None
    seed = seeded.cache_size  # the vocabulary's whole words
    assert 20_000 < seed <= 35_000
    sizes = []
    for i in range(200):
        seeded.encode(" ".join(f"w{i}x{j}," for j in range(400)))  # 80,000 new chunks
        sizes.append(seeded.cache_size)
    assert max(sizes) <= 70_000 and min(sizes[120:]) < 45_000 and min(sizes) >= seed
    assert seeded.encode("the model") == ([101, 1996, 2944, 102], False)
    short, long = "y" * CACHE_KEY_MAX_CHARS, "x" * (CACHE_KEY_MAX_CHARS + 1)
    wp.encode(f"{long} {short}")  # a long chunk is composed from its words, not kept whole
    assert short in wp._cache and long not in wp._cache
