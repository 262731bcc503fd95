"""The OpenAI-compatible surface's bodies (``/openai/v1``), shaped as the official client
expects them. External input rejects unknown fields: an option we do not implement is a
clear 400 naming it, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

TokenIds = list[int]


class EmbeddingsRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``POST /openai/v1/embeddings``. ``input`` is one text or a list of texts; token-id
    arrays (which the type admits so that the refusal can name them) are refused."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    input: str | list[str | int | TokenIds]
    encoding_format: Literal["float", "base64"] = "float"
    """``base64``: each vector as little-endian float32 bytes, base64-encoded (what the
    official client asks for by default, and decodes itself)."""
    user: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    """An end-user id for the caller's own tracing; accepted and not stored."""
    dimensions: int | None = None
    """Accepted only when it equals the model's own dimension: no model here is truncatable."""


class Embedding(msgspec.Struct, frozen=True):
    """One input's vector: floats, or a base64 string of little-endian float32."""

    index: int
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class Usage(msgspec.Struct, frozen=True):
    """Tokens the model read (the tokenizer's count, special tokens included)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(msgspec.Struct, frozen=True):
    """The answer to ``POST /openai/v1/embeddings``, one entry per input in input order."""

    data: list[Embedding]
    model: str
    """The model that ran, pinned (``name@version``)."""
    usage: Usage
    object: Literal["list"] = "list"


class Model(msgspec.Struct, frozen=True):
    """A served model: its alias (newest version) or a pinned ``name@version``."""

    id: str
    created: int
    """When the version's folder was written (Unix seconds)."""
    owned_by: str = "inferq"
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, frozen=True):
    """``GET /openai/v1/models``."""

    data: list[Model]
    object: Literal["list"] = "list"


class ErrorDetail(msgspec.Struct, frozen=True):
    """OpenAI's error object. ``code`` is OpenAI's name where one exists (``invalid_api_key``,
    ``model_not_found``, ``rate_limit_exceeded``, ``unsupported_parameter``), else inferq's."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct, frozen=True):
    """Every error under ``/openai/v1``: ``{"error": {message, type, param, code}}``."""

    error: ErrorDetail
