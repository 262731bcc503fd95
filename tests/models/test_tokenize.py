"""Tokenisation decisions: golden token counts, rejections, truncation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from models.config import ModelConfig
from models.errors import ModelLoadError
from models.tokenize import Encoded, ItemRejection, TextTokenizer
from schemas.errors import ErrorCode


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path, minilm_config: ModelConfig) -> TextTokenizer:
    return TextTokenizer.from_dir(minilm_dir, minilm_config)


def test_golden_token_counts(tokenizer: TextTokenizer, golden: dict[str, Any]) -> None:
    items = golden["items"]
    encoded = tokenizer.encode([item["text"] for item in items])
    assert [e.length for e in encoded] == [item["num_tokens"] for item in items]  # type: ignore[union-attr]
    assert all(e.ids[0] == 101 and e.ids[-1] == 102 for e in encoded)  # type: ignore[union-attr]
    # One golden text has 518 word-pieces: the only truncated one.
    assert [e.length for e in encoded if e.truncated] == [256]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\t  \r\n", "\x00\x01\x07\x1b", "\u200b\u200b", "\ufeff", "[CLS]",
     " [SEP] [CLS]\u200b"],
    ids=["empty", "space", "whitespace", "control", "zero-width", "bom", "cls", "sep-cls"],
)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "hf"])
def test_texts_without_tokens_are_empty_text(tokenizer: TextTokenizer, minilm_dir: Path,
                                             minilm_config: ModelConfig, text: str,
                                             fast: bool) -> None:
    tok = tokenizer if fast else TextTokenizer.from_dir(minilm_dir, minilm_config, fast=False)
    (result,) = tok.encode([text])
    assert isinstance(result, ItemRejection) and result.code == ErrorCode.EMPTY_TEXT
    assert result.to_item_error().retryable is False


def test_a_special_token_beside_words_or_one_that_is_not_the_frame_is_content(
        tokenizer: TextTokenizer) -> None:
    assert all(isinstance(e, Encoded) for e in tokenizer.encode(["[CLS] hello", "[MASK]"]))


@pytest.mark.parametrize("text", ["\ud800", "abc \udfff def", "x\ud83d"])
def test_lone_surrogates_are_invalid_text(tokenizer: TextTokenizer, text: str) -> None:
    (result,) = tokenizer.encode([text])
    assert isinstance(result, ItemRejection) and result.code == ErrorCode.INVALID_TEXT
    assert "surrogate" in result.message


def test_rejections_stay_in_place_among_good_items(tokenizer: TextTokenizer) -> None:
    results = tokenizer.encode(["hello", "", "world \ud800", "!!!"])
    assert [type(r).__name__ for r in results] == [
        "Encoded",
        "ItemRejection",
        "ItemRejection",
        "Encoded",
    ]
    assert results[0] == Encoded([101, 7592, 102])


def test_a_50000_character_text_is_truncated_quickly(tokenizer: TextTokenizer) -> None:
    text = ("Inference batches are shaped by length. " * 1300)[:50_000]
    start = time.perf_counter()
    (result,) = tokenizer.encode([text])
    assert time.perf_counter() - start < 1.0
    assert isinstance(result, Encoded) and result.truncated and result.length == 256
    assert result.ids[-1] == 102


def test_exactly_max_length_is_not_truncated(tokenizer: TextTokenizer) -> None:
    exact, over = tokenizer.encode(["a " * 254, "a " * 255])
    assert exact == Encoded(exact.ids, truncated=False) and exact.length == 256  # type: ignore[union-attr]
    assert over == Encoded(over.ids, truncated=True) and over.length == 256  # type: ignore[union-attr]


def test_wheel_padding_is_disabled(tokenizer: TextTokenizer) -> None:
    (short,) = tokenizer.encode(["hi"])
    assert short == Encoded([101, 7632, 102])


def test_missing_tokenizer_fails_naming_the_path(
    tmp_path: Path, minilm_config: ModelConfig
) -> None:
    with pytest.raises(ModelLoadError) as info:
        TextTokenizer.from_dir(tmp_path, minilm_config)
    assert info.value.path == tmp_path / "tokenizer.json" and "missing" in str(info.value)


def test_corrupt_tokenizer_fails_naming_the_path(
    tmp_path: Path, minilm_config: ModelConfig
) -> None:
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": 42}')
    with pytest.raises(ModelLoadError, match="corrupt tokenizer") as info:
        TextTokenizer.from_dir(tmp_path, minilm_config)
    assert str(tmp_path / "tokenizer.json") in str(info.value)
