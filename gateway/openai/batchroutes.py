"""The Batch API routes under ``/openai/v1``: batch input files (``/files``) and batches
(``/batches``), on the native guard, admission and error translation; answers in OpenAI's
shapes. Not offered, with a 404 ``not_offered`` that says so: listing and deleting files
(files expire with the results' retention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import HttpMethod, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream

from gateway.limits import IDEMPOTENCY_HEADER, check_idempotency_key
from gateway.openai.batches import Batches
from gateway.openai.batchindex import BatchIndex
from gateway.openai.errors import NotOffered
from gateway.openai.files import UPLOADED, BatchFiles, to_openai_file
from gateway.openai.methods import other_methods
from gateway.openai.output import BatchOutput
from gateway.routes import WITH_AUTH, caller, services
from gateway.services import GatewayServices
from schemas.openai import ErrorResponse
from schemas.openai_batch import Batch, BatchCreateRequest, BatchList, OpenAIFile
from store.objects import ObjectBucket

BATCH_ID_PATTERN = "^batch_[0-9a-f]{32}$"
_DESCRIPTIONS = {
    400: "`invalid_request` (an upload's refusal names the bad line: `line N: ...`) or "
         "`unsupported_parameter` (another endpoint, completion window or purpose)",
    401: "`invalid_api_key`: missing or unknown API key (AuthenticationError)",
    404: "`file_not_found` / `batch_not_found` (NotFoundError); `not_offered` for listing "
         "or deleting files",
    405: "`method_not_allowed`, with `Allow`",
    409: "`idempotency_in_progress`: the first request with this Idempotency-Key is "
         "unfinished (retry)",
    413: "`payload_too_large`: the file over INFERQ_MAX_FILE_BYTES, more texts than "
         "INFERQ_MAX_FILE_LINES, or a line over 32 MiB",
    415: "`unsupported_media_type`: not multipart/form-data",
    422: "`idempotency_key_reused`: the same Idempotency-Key with another body",
    429: "`rate_limit_exceeded` / `quota_exceeded`, with Retry-After, retry-after-ms and "
         "RateLimit headers (the client retries)",
    503: "`overloaded` / `unavailable`, with Retry-After (the client retries)",
}


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {s: ResponseSpec(ErrorResponse, description=_DESCRIPTIONS[s],
                            generate_examples=False) for s in statuses}


@dataclass(frozen=True)
class BatchServices:
    """The Batch API's parts, built once per app from its GatewayServices."""

    svc: GatewayServices
    files: BatchFiles
    batches: Batches

    @classmethod
    def build(cls, svc: GatewayServices) -> BatchServices:
        """Wire the parts over the gateway's connections (the bucket is created on first
        use, beside the native files' bucket)."""
        s = svc.settings
        assert svc.files is not None
        bucket = ObjectBucket(svc.nc, f"{s.files_bucket}-openai", ttl_s=2 * s.result_ttl_s,
                              replicas=s.stream_replicas)
        files = BatchFiles(s, bucket, svc.files, svc.submitter.resolve_model,
                           lambda name, version: svc.repo.config(name, version).output_dim)
        output = BatchOutput(svc.reader, files, svc.redis)
        return cls(svc, files, Batches(svc, files, output, BatchIndex(svc.redis,
                                                                      s.result_ttl_s)))


def batch_services(request: Request) -> BatchServices:
    """The app's BatchServices, built on first use."""
    svc = services(request)
    found = request.app.state.get("openai_batches")
    if found is None or found.svc is not svc:
        found = BatchServices.build(svc)
        request.app.state["openai_batches"] = found
    return found


@post("/files", status_code=200, request_max_body_size=None,
      summary="Upload a batch input file (multipart: `purpose=batch`, `file`)",
      description="Each line `{custom_id, method: \"POST\", url: \"/v1/embeddings\", body: "
                  "{model, input, encoding_format?}}` is checked as the body streams in: a bad "
                  "line is a 400 naming it (`line N: ...`), and nothing is kept. One model a "
                  "file; `custom_id`s unique; up to INFERQ_MAX_FILE_LINES texts and "
                  "INFERQ_MAX_FILE_BYTES bytes (OpenAI: 50,000 requests, 200 MB).",
      responses=_errors(400, 401, 405, 413, 415, 429, 503), **WITH_AUTH)
async def upload_file(request: Request) -> Response[OpenAIFile]:
    """Store a checked batch file; answers OpenAI's File object."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.write(tenant, key_id)
    doc = await b.files.upload(tenant.name, request.headers.get("content-type"),
                               request.stream())
    return Response(doc, headers=headers)


@get("/files/{file_id:str}", summary="A batch input, output or error file",
     responses=_errors(400, 401, 404, 405, 429, 503), **WITH_AUTH)
async def get_file(request: Request, file_id: FromPath[str]) -> Response[OpenAIFile]:
    """An uploaded batch file, or an ended batch's output or error file."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.read(tenant, key_id)
    if UPLOADED.fullmatch(file_id):
        return Response(to_openai_file(file_id, await b.files.meta(tenant.name, file_id)),
                        headers=headers)
    doc, _, _ = await b.batches.output_file(tenant.name, file_id)
    assert doc is not None  # described
    return Response(doc, headers=headers)


@get("/files/{file_id:str}/content", summary="A file's content (JSONL), streamed",
     media_type="application/jsonl", responses=_errors(400, 401, 404, 405, 429, 503), **WITH_AUTH)
async def get_file_content(request: Request, file_id: FromPath[str]) -> Stream:
    """An uploaded file's bytes as sent, or an ended batch's output or error file: one line
    per request, each ``custom_id`` exactly once across the two, the same bytes each time."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.read(tenant, key_id)
    if UPLOADED.fullmatch(file_id):
        await b.files.meta(tenant.name, file_id)
        return Stream(b.files.content(file_id), media_type="application/jsonl",
                      headers=headers)
    # Rendered as it streams (no length: that would render it twice on a first download).
    _, job, input_file_id = await b.batches.output_file(tenant.name, file_id, describe=False)
    kind = "output" if file_id.endswith("-output") else "errors"
    return Stream(b.batches.output.lines(tenant.name, job, input_file_id, kind),
                  media_type="application/jsonl", headers=headers)


@get("/files", summary="Not offered: listing files (404 `not_offered`)",
     responses=_errors(401, 404, 405), **WITH_AUTH)
async def list_files(request: Request) -> None:
    """Not offered: a 404 that says so."""
    raise NotOffered("listing files is not offered: keep the ids `POST /openai/v1/files` and "
                     "the batch (`output_file_id`, `error_file_id`) answer")


@delete("/files/{file_id:str}", summary="Not offered: deleting files (404 `not_offered`)",
        responses=_errors(400, 401, 404, 405), **WITH_AUTH)
async def delete_file(request: Request, file_id: FromPath[str]) -> None:
    """Not offered: a 404 that says so."""
    raise NotOffered(f"deleting files is not offered: files expire with the results' "
                     f"retention ({services(request).settings.result_ttl_s / 86400:g} days)")


@post("/batches", status_code=200, summary="Create a batch of embeddings requests",
      description="The batch is a native job of the file's texts at `batch` priority, "
                  "admitted like `POST /v1/jobs`; the completion window (`24h`) is its "
                  "deadline. `Idempotency-Key` makes creation exactly-once.",
      responses=_errors(400, 401, 404, 405, 409, 413, 422, 429, 503), **WITH_AUTH)
async def create_batch(
    request: Request,
    data: Annotated[BatchCreateRequest, Body(description="`endpoint`: `/v1/embeddings`; "
                                             "`completion_window`: `24h`")],
    idempotency_key: Annotated[str | None, HeaderParameter(
        name=IDEMPOTENCY_HEADER, required=False,
        description="Makes creation exactly-once per (tenant, key) for 24 h")] = None,
) -> Response[Batch]:
    """Start a batch from an uploaded batch file."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    key = check_idempotency_key(idempotency_key, b.svc.settings)
    batch, done = await b.batches.create(tenant, key_id, data, key,
                                         request.scope["state"].get("traceparent"))
    headers = dict(done.headers)
    if done.replayed:
        headers["Idempotency-Replayed"] = "true"
    return Response(batch, headers=headers)


@get("/batches", summary="The tenant's batches, newest first",
     responses=_errors(400, 401, 405, 429, 503), **WITH_AUTH)
async def list_batches(
    request: Request,
    after: Annotated[str | None, QueryParameter(required=False, pattern=BATCH_ID_PATTERN,
                                                description="The last id of the previous "
                                                            "page")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> Response[BatchList]:
    """A page of the tenant's live batches."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.read(tenant, key_id)
    return Response(await b.batches.list(tenant.name, after, limit), headers=headers)


@get("/batches/{batch_id:str}", summary="A batch",
     responses=_errors(400, 401, 404, 405, 429, 503), **WITH_AUTH)
async def get_batch(request: Request, batch_id: FromPath[str]) -> Response[Batch]:
    """The batch's status, request counts and, once it ended, its files."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.read(tenant, key_id)
    return Response(await b.batches.get(tenant.name, batch_id), headers=headers)


@post("/batches/{batch_id:str}/cancel", status_code=200,
      summary="Cancel a batch: requests not yet run fail `batch_cancelled`",
      responses=_errors(400, 401, 404, 405, 429, 503), **WITH_AUTH)
async def cancel_batch(request: Request, batch_id: FromPath[str]) -> Response[Batch]:
    """End the batch now (idempotent); what ran keeps its results."""
    tenant, key_id = caller(request)
    b = batch_services(request)
    headers = await b.svc.admission.write(tenant, key_id)
    return Response(await b.batches.cancel(tenant.name, batch_id), headers=headers)


BATCH_ROUTES = [
    other_methods("/files", {HttpMethod.POST, HttpMethod.GET}),
    other_methods("/files/{file_id:str}", {HttpMethod.GET, HttpMethod.DELETE}),
    other_methods("/files/{file_id:str}/content", {HttpMethod.GET}),
    other_methods("/batches", {HttpMethod.POST, HttpMethod.GET}),
    other_methods("/batches/{batch_id:str}", {HttpMethod.GET}),
    other_methods("/batches/{batch_id:str}/cancel", {HttpMethod.POST}),
    upload_file, list_files, get_file, delete_file, get_file_content, create_batch,
    list_batches, get_batch, cancel_batch,
]
"""Every route, the 405/OPTIONS handlers first."""
