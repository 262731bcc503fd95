"""What the OpenAPI document says about ``/openai/v1`` that Litestar cannot derive from the
types: the embeddings body with every limit the server enforces, the served model names and
their dimensions (read from the repository when the document is first built), the batch body
with the values offered, and the multipart upload (read raw, gateway/openai/files.py). Exact
both ways, like the native routes' (gateway/openapi.py): the schema-driven fuzzer holds us to
it.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from gateway.openai.batches import COMPLETION_WINDOWS
from gateway.openai.batchfile import ENDPOINT
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


def batch_request_schema() -> dict[str, Any]:
    """BatchCreateRequest as the gateway checks it."""
    return {
        "type": "object", "additionalProperties": False, "title": "BatchCreateRequest",
        "required": ["input_file_id", "endpoint", "completion_window"],
        "description": "OpenAI's batch request. Unknown members (`output_expires_after`) are "
                       "refused (400).",
        "properties": {
            "input_file_id": {"type": "string", "minLength": 1, "maxLength": 64,
                              "description": "A file from POST /openai/v1/files (404 "
                                             "`file_not_found` if unknown)"},
            "endpoint": {"type": "string", "enum": [ENDPOINT]},
            "completion_window": {"type": "string", "enum": list(COMPLETION_WINDOWS),
                                  "description": "The native job's deadline: requests not "
                                                 "run by then fail `batch_expired`"},
            "metadata": {"anyOf": [{"type": "object", "maxProperties": 16,
                                    "propertyNames": {"maxLength": 64},
                                    "additionalProperties": {"type": "string",
                                                             "maxLength": 512}},
                                   {"type": "null"}]},
        },
    }


def upload_body() -> dict[str, Any]:
    """``POST /openai/v1/files``: what the official client's ``files.create`` sends."""
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "purpose"], "additionalProperties": False,
        "properties": {
            "file": {"type": "string", "format": "binary", "contentMediaType": "application/jsonl",
                     "description": "JSON Lines: `{custom_id, method: \"POST\", url: "
                                    "\"/v1/embeddings\", body}` a line, one model a file"},
            "purpose": {"type": "string", "enum": ["batch"]},
        }}}}}


def finish(doc: dict[str, Any], settings: Settings, repo: ModelRepository) -> None:
    """Complete Litestar's document in place for the ``/openai/v1`` routes."""
    schemas = doc["components"].setdefault("schemas", {})
    schemas["EmbeddingsRequest"] = embeddings_request_schema(settings, repo)
    schemas["BatchCreateRequest"] = batch_request_schema()
    if upload := doc["paths"].get("/openai/v1/files", {}).get("post"):
        upload["requestBody"] = upload_body()
    for path, ops in doc["paths"].items():
        for op in ops.values() if path.startswith("/openai/") else ():
            if op.get("summary", "").startswith("Not offered"):  # a 404, always
                for status in [s for s in op["responses"] if s.startswith("2")]:
                    del op["responses"][status]
