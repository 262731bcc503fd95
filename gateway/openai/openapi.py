"""What the OpenAPI document says about ``/openai/v1`` that Litestar cannot derive from the
types: the embeddings body with every limit the server enforces, the served model names and
their dimensions (read from the repository when the document is first built). Exact both
ways, like the native routes' (gateway/openapi.py): the schema-driven fuzzer holds us to it.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from gateway.openai.embeddings import MAX_INPUTS
from models.repository import ModelRepository


def embeddings_request_schema(settings: Settings, repo: ModelRepository) -> dict[str, Any]:
    """EmbeddingsRequest as the gateway checks it (token-id arrays are refused: not listed)."""
    models = repo.models()
    names = [n + s for n, versions in models.items() for s in ("", *(f"@{v}" for v in versions))]
    dims = sorted({repo.config(n, v).output_dim for n, versions in models.items()
                   for v in versions})
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_chars}
    return {
        "type": "object", "additionalProperties": False, "required": ["model", "input"],
        "title": "EmbeddingsRequest",
        "description": "OpenAI's embeddings request. Unknown members are refused (400), as "
                       "are token-id arrays in `input` (`unsupported_parameter`).",
        "properties": {
            "model": {"type": "string", "enum": names,
                      "description": "A served model: its alias (newest version) or "
                                     "`name@version` (GET /openai/v1/models lists them)."},
            "input": {"anyOf": [text, {"type": "array", "items": text, "minItems": 1,
                                       "maxItems": min(MAX_INPUTS,
                                                       settings.max_items_per_job)}],
                      "description": "One text, or a list of texts (one vector each)."},
            "encoding_format": {"type": "string", "enum": ["float", "base64"],
                                "default": "float",
                                "description": "`base64`: little-endian float32, "
                                               "base64-encoded."},
            "user": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"}],
                     "description": "Your end-user's id; accepted, not stored."},
            "dimensions": {"anyOf": [{"type": "integer", "enum": dims}, {"type": "null"}],
                           "description": "Only the model's own dimension: no model here "
                                          "is truncatable (`unsupported_parameter`)."},
        },
    }


def finish(doc: dict[str, Any], settings: Settings, repo: ModelRepository) -> None:
    """Complete Litestar's document in place for the ``/openai/v1`` routes."""
    doc["components"].setdefault("schemas", {})["EmbeddingsRequest"] = \
        embeddings_request_schema(settings, repo)
