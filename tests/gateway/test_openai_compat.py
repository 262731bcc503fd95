"""The OpenAI-compatible surface's pure parts, without a service: which inputs are refused
and how, how errors are named, and that base64 carries the floats exactly."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from gateway import errors as E
from gateway.openai.embeddings import encode_vector, texts_of
from gateway.openai.errors import UnsupportedParameter, error_type, param_of
from schemas.api import FieldError
from schemas.openai import EmbeddingsRequest


def req(input) -> EmbeddingsRequest:
    return EmbeddingsRequest(model="minilm", input=input)


def test_one_text_or_a_list_of_texts() -> None:
    assert texts_of(req("a"), 10, 100) == ["a"]
    assert texts_of(req(["a", "b"]), 10, 100) == ["a", "b"]


@pytest.mark.parametrize(("input", "error", "pointer"), [
    ([], E.InvalidRequest, "/input"),
    (["a", ""], E.InvalidRequest, "/input/1"),
    ("", E.InvalidRequest, "/input"),
    (["a"] * 11, E.InvalidRequest, "/input"),
    ([101, 102], UnsupportedParameter, "/input/0"),
    (["a", [101, 102]], UnsupportedParameter, "/input/1"),
    (["x" * 101], E.InvalidRequest, "/input/0"),
])
def test_refused_inputs_name_their_place(input, error, pointer) -> None:
    with pytest.raises(error) as info:
        texts_of(req(input), 10, 100)
    assert info.value.errors[0].pointer == pointer


def test_base64_is_little_endian_float32_of_the_same_numbers() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32).tolist()
    decoded = np.frombuffer(base64.b64decode(encode_vector(vector, "base64")), dtype="<f4")
    assert decoded.tolist() == vector
    assert encode_vector(vector, "float") is vector


def test_openai_names_for_types_and_params() -> None:
    assert [error_type(s) for s in (400, 401, 404, 429, 503, 504)] == [
        "invalid_request_error", "authentication_error", "invalid_request_error",
        "rate_limit_error", "server_error", "server_error"]
    assert param_of([FieldError("/input/3", "x")]) == "input[3]"
    assert param_of([FieldError("/dimensions", "x")]) == "dimensions"
    assert param_of([FieldError("header:Content-Type", "x")]) is None
    assert param_of(None) is None
