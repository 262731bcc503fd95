"""Routes of uploaded input files: ``POST /v1/files`` (a JSONL body, streamed),
``GET``/``DELETE /v1/files/{file_id}``; the manifest of a job's results artifact; and
``POST /v1/jobs/{job_id}/retry``, which reads a job's inputs back from the same bucket. Same
authentication, admission and error envelope as gateway/routes.py; their own OPTIONS
handlers."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, delete, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter

from gateway import errors as E
from gateway.limits import IDEMPOTENCY_HEADER, check_idempotency_key
from gateway.routes import (
    WITH_AUTH,
    JobId,
    accepted,
    caller,
    get_and_head,
    options_handlers,
    problems,
    services,
)
from schemas.api import JobStatusDoc, Problem
from schemas.files import FileObject, ResultsManifest

FileId = Annotated[str, FromPath]


@post("/v1/files", status_code=201, request_max_body_size=None,
      summary="Upload a JSONL file of inputs (one `{\"text\", \"id\"?}` or JSON string a line)",
      description="The body is streamed to the object store and every line validated; a bad "
                  "line is a 400 (413 for a limit) whose `errors[0].pointer` is "
                  "`line:<n>[/member]`, and nothing is kept. Limits: INFERQ_MAX_FILE_LINES "
                  "lines (1,000,000) and INFERQ_MAX_FILE_BYTES bytes (1 GiB). The file can be "
                  "used by `POST /v1/jobs` (`input_file_id`) until `expires_at`.",
      responses=problems(400, 401, 413, 429, 503), **WITH_AUTH)
async def upload_file(request: Request) -> Response[FileObject]:
    """Store a validated JSONL file; answers its id, line count, size and SHA-256."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.write(tenant, key_id)
    doc = await svc.files.upload(tenant.name, request.stream())
    return Response(doc, status_code=201,
                    headers={"Location": f"/v1/files/{doc.file_id}", **headers})


@get_and_head("/v1/files/{file_id:str}", summary="An uploaded file's description",
              responses=problems(400, 401, 404, 429, 503), **WITH_AUTH)
async def get_file(request: Request, file_id: FileId) -> Response[FileObject]:
    """The tenant's file: lines, bytes, SHA-256 and expiry; 404 for any other."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    return Response(await svc.files.get(tenant.name, file_id), headers=headers)


@delete("/v1/files/{file_id:str}", status_code=204,
        summary="Delete an uploaded file and its bytes (409 while a job is queued from it)",
        responses={**problems(400, 401, 404, 429, 503), 409: ResponseSpec(
            Problem, description="`file_in_use`: a job is still being queued from the file",
            media_type=E.PROBLEM_JSON, generate_examples=False)}, **WITH_AUTH)
async def delete_file(request: Request, file_id: FileId) -> Response[None]:
    """Delete the tenant's file; jobs already queued from it are unaffected."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.write(tenant, key_id)
    await svc.files.delete(tenant.name, file_id)
    return Response(None, status_code=204, headers=headers)


@get_and_head("/v1/jobs/{job_id:str}/results/manifest",
              summary="What a terminal job's results.jsonl holds: lines, bytes, SHA-256, counts",
              responses={**problems(400, 401, 404, 429, 503), 409: ResponseSpec(
                  Problem, description="`job_not_terminal`: the artifact is not final yet",
                  media_type=E.PROBLEM_JSON, generate_examples=False)}, **WITH_AUTH)
async def get_results_manifest(request: Request, job_id: JobId) -> Response[ResultsManifest]:
    """The manifest of the job's artifact; 409 while the job runs."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    return Response(await svc.artifacts.required(tenant.name, job_id), headers=headers)


@post("/v1/jobs/{job_id:str}/retry", status_code=202,
      summary="A new job of a terminal job's failed items (those with `retryable: true`, or "
              "every failed one with `all_failed=true`)",
      description="The new job's status document names `parent_job_id`; its items keep their "
                  "`id`, and each result carries `parent_index`, the item's index in the "
                  "parent (`index` is its place in the retry). Same model version, priority, "
                  "metadata and timeout as the parent. Idempotency-Key as for `POST /v1/jobs`.",
      responses={**problems(400, 401, 404, 413, 422, 429, 503), 409: ResponseSpec(
          Problem, description="`job_not_terminal` (retryable: the job still runs), "
          "`nothing_to_retry` (no item failed so), `inputs_not_kept` (the job's inputs were "
          "not kept), or `idempotency_in_progress`",
          media_type=E.PROBLEM_JSON, generate_examples=False)}, **WITH_AUTH)
async def retry_job(
    request: Request, job_id: JobId,
    all_failed: Annotated[bool, QueryParameter(
        required=False, description="Every failed item, not only the retryable ones")] = False,
    idempotency_key: Annotated[str | None, HeaderParameter(
        name=IDEMPOTENCY_HEADER, required=False,
        description="Makes the retry exactly-once per (tenant, key) for 24 h")] = None,
) -> Response[JobStatusDoc]:
    """Queue the retry's job; a repeated Idempotency-Key replays it."""
    tenant, key_id = caller(request)
    svc = services(request)
    key = check_idempotency_key(idempotency_key, svc.settings)
    if svc.retries is None:
        raise E.RouteNotFound("retries are not served here")
    done = await svc.retries.retry(tenant, key_id, job_id, all_failed=all_failed,
                                   idempotency_key=key,
                                   traceparent=request.scope["state"].get("traceparent"))
    return await accepted(svc, tenant, done)


_HANDLERS = [upload_file, get_file, delete_file, get_results_manifest, retry_job]
FILE_ROUTES = options_handlers(_HANDLERS) + _HANDLERS
