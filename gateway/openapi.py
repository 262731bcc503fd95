"""What the OpenAPI document says that Litestar cannot derive from the handlers: the submit
body (read raw, see gateway/body.py) with every limit the server enforces, the served model
names, the cursor and Idempotency-Key formats, 304/405/415 answers, and links from
``POST /v1/jobs`` to the routes of the job it made.

The document must be exact both ways: a request it allows is accepted (2xx, or 401/404/409/
429 for reasons no schema states), one it forbids is refused (4xx). A schema-driven fuzzer
(schemathesis, tests/gateway/test_schemathesis.py) holds the server to it.
"""

from __future__ import annotations

import copy
from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from core.config import Settings
from gateway.limits import IDEMPOTENCY_HEADER
from gateway.openai import openapi as openai_openapi
from schemas.api import METADATA_MAX_DEPTH, METADATA_MAX_NUMBER

CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
"""What every cursor this API returns looks like (URL-safe base64 without padding); empty is
the first page, like no cursor."""
IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7e]+$"
_REF = "#/components/schemas/"
_PROBLEM = {"$ref": _REF + "Problem"}


def metadata_schemas() -> dict[str, Any]:
    """``metadata`` as JSON Schema without recursion (fuzzers and generators cannot follow
    recursive references): one definition per level, the deepest holding scalars only."""
    number = {"type": "number", "minimum": -METADATA_MAX_NUMBER, "maximum": METADATA_MAX_NUMBER}
    scalar = [{"type": "null"}, {"type": "boolean"}, number, {"type": "string"}]
    defs: dict[str, Any] = {}
    for level in range(METADATA_MAX_DEPTH, 0, -1):
        if level == METADATA_MAX_DEPTH:
            inner = {"anyOf": scalar}
        else:
            inner = {"$ref": f"{_REF}MetadataValue{level + 1}"}
        container = [{"type": "array", "items": inner},
                     {"type": "object", "additionalProperties": inner}]
        if level == 1:
            defs["Metadata"] = {
                "type": "object", "additionalProperties": inner,
                "description": f"Free-form JSON object kept with the job: at most "
                               f"{METADATA_MAX_DEPTH} levels deep, numbers within "
                               f"±{METADATA_MAX_NUMBER}, and (a limit JSON Schema cannot "
                               f"state) at most INFERQ_MAX_METADATA_BYTES encoded (413)."}
        else:
            defs[f"MetadataValue{level}"] = {"anyOf": scalar + container}
    return defs


def submit_schemas(settings: Settings, models: list[str]) -> dict[str, Any]:
    """SubmitRequest and InputItem with every limit the gateway checks before any work."""
    item = {"$ref": _REF + "InputItem"}
    return {
        "InputItem": {
            "type": "object", "additionalProperties": False, "required": ["text"],
            "description": "One input: the text to embed and an optional client-chosen id "
                           "echoed in results.",
            "properties": {
                "text": {"type": "string", "maxLength": settings.max_text_chars},
                "id": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"}]},
            },
        },
        "SubmitRequest": {
            "type": "object", "additionalProperties": False, "required": ["model"],
            "description": "Exactly one of `inputs` (1 to INFERQ_MAX_ITEMS_PER_JOB items), "
                           "`input` (one item) or `input_file_id`. Members are named once "
                           "each; the body is UTF-8 JSON no larger than "
                           "INFERQ_MAX_BODY_BYTES (413).",
            "properties": {
                "model": {"type": "string", "enum": models,
                          "description": "A served model: its alias (newest version) or "
                                         "`name@version`."},
                "inputs": {"anyOf": [{"type": "array", "items": item, "minItems": 1,
                                      "maxItems": settings.max_items_per_job},
                                     {"type": "null"}]},
                "input": {"anyOf": [item, {"type": "null"}]},
                "priority": {"$ref": _REF + "Priority", "default": "batch"},
                "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0,
                                         "maximum": 7 * 86400}, {"type": "null"}]},
                "metadata": {"anyOf": [{"$ref": _REF + "Metadata"}, {"type": "null"}]},
                "webhook": {"anyOf": [{"$ref": _REF + "WebhookRequest"}, {"type": "null"}]},
                "input_file_id": {
                    "anyOf": [{"type": "string", "pattern": "^file-[0-9a-f]{32}$"},
                              {"type": "null"}],
                    "description": "Instead of `inputs`/`input`: an uploaded file (`POST "
                                   "/v1/files`) whose lines are the items, up to "
                                   "INFERQ_MAX_FILE_LINES (404 `file_not_found` if unknown)"},
            },
            "oneOf": [
                {"required": ["inputs"], "properties": {"inputs": {"type": "array"}}},
                {"required": ["input"], "properties": {"input": {"type": "object"}}},
                {"required": ["input_file_id"],
                 "properties": {"input_file_id": {"type": "string"}}},
            ],
        },
        "WebhookRequest": {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "description": "Where to send the job's end (Standard Webhooks: `webhook-id`, "
                           "`webhook-timestamp`, `webhook-signature` signed with the tenant's "
                           "webhook secret; the body is the status document). https to a "
                           "public address only, unless the operator allows more; a tenant "
                           "without a webhook secret gets a 400.",
            "properties": {
                # A host name (an address literal must be public): what a fuzzer may send.
                "url": {"type": "string", "minLength": 1, "maxLength": 2048,
                        "pattern": "^https://([a-z0-9-]+[.])+[a-z][a-z0-9-]*(:[1-9][0-9]{0,3})?"
                                   "(/[A-Za-z0-9._~/-]*)?$"},
                "events": {"anyOf": [{"type": "array", "minItems": 1, "maxItems": 2,
                                      "items": {"type": "string", "enum": [
                                          "job.succeeded", "job.failed"]}},
                                     {"type": "null"}],
                           "description": "Default: both"},
            },
        },
        **metadata_schemas(),
    }


def _links() -> dict[str, Any]:
    by_job = {"job_id": "$response.body#/job_id"}
    return {
        "GetJob": {"operationId": "V1JobsJobIdGetGetJob", "parameters": by_job,
                   "description": "The job's status document"},
        "GetResults": {"operationId": "V1JobsJobIdResultsGetGetResults", "parameters": by_job,
                       "description": "A page of the job's results"},
        "GetResultsJsonl": {"operationId": "V1JobsJobIdResultsJsonlGetGetResultsJsonl",
                            "parameters": by_job, "description": "Every result, as JSONL"},
        "CancelJob": {"operationId": "V1JobsJobIdCancelCancelJob", "parameters": by_job,
                      "description": "Cancel the job"},
        "RetryJob": {"operationId": "V1JobsJobIdRetryRetryJob", "parameters": by_job,
                     "description": "Once terminal: its failed items as a new job"},
    }


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _PROBLEM}}}


def finish(doc: dict[str, Any], settings: Settings, models: list[str]) -> None:
    """Complete Litestar's document in place (it is generated once and cached)."""
    doc["components"].setdefault("schemas", {}).update(submit_schemas(settings, models))
    paths = doc["paths"]
    for ops in paths.values():
        ops.pop("head", None)  # HEAD is GET without a body (RFC 9110); listed once, as GET
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["name"] == "cursor":
                    p["schema"] = {"type": "string", "pattern": CURSOR_PATTERN,
                                   "maxLength": p["schema"].get("maxLength", 512)}
                    p["description"] = ("Opaque: only a `next_cursor` this API returned "
                                        "(anything else is a 400)")
                elif p["name"] == IDEMPOTENCY_HEADER:
                    p["schema"] = {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN,
                                   "minLength": 1,
                                   "maxLength": settings.max_idempotency_key_chars}
                elif p["name"] == "status" and p["in"] == "query":
                    p["schema"] = {"type": "string", "enum": ["succeeded", "failed"]}
                elif p["name"] == "If-None-Match":
                    p["schema"] = {"type": "string"}
    submit = paths["/v1/jobs"]["post"]
    submit["requestBody"] = {"required": True, "content": {
        "application/json": {"schema": {"$ref": _REF + "SubmitRequest"}}}}
    submit["responses"]["202"]["links"] = _links()
    submit["responses"]["202"].setdefault("headers", {})["Location"] = {
        "description": "The job's status URL", "schema": {"type": "string"}}
    if upload := paths.get("/v1/files", {}).get("post"):  # read raw (gateway/files.py)
        upload["requestBody"] = {"required": True, "content": {"application/x-ndjson": {
            "schema": {"type": "string", "description": "JSON Lines: each line a JSON string "
                       "or an object {text, id?}"}}}}
    get_job = paths["/v1/jobs/{job_id}"]["get"]

    get_job["responses"]["304"] = {"description": "Not modified: If-None-Match matched the "
                                                  "job's current ETag (no body)"}
    for path, ops in paths.items():
        for op in ops.values():
            op["responses"].setdefault("405", _problem(
                "`method_not_allowed`, with `Allow`"))
            if path.startswith("/v1/"):
                op["responses"].setdefault("401", _problem(
                    "`unauthenticated`: missing or unknown API key"))


class FinishedJsonPlugin(JsonRenderPlugin):
    """Serves Litestar's document completed by :func:`finish`, built on the first request
    (the served model names come from the repository then) and kept."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._rendered: bytes | None = None

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        """The finished document as JSON."""
        if self._rendered is None:
            doc = copy.deepcopy(openapi_schema)
            repo = request.app.state.services.repo
            models = [name + suffix for name, versions in repo.models().items()
                      for suffix in ("", *(f"@{v}" for v in versions))]
            finish(doc, self._settings, models)
            openai_openapi.finish(doc, self._settings, repo)
            self._rendered = self.render_json(request, doc)
        return self._rendered
