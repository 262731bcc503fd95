"""Routes of uploaded input files: ``POST /v1/files`` (a JSONL body, streamed),
``GET``/``DELETE /v1/files/{file_id}``; and the manifest of a job's results artifact. Same
authentication, admission and error envelope as gateway/routes.py; their own OPTIONS
handlers."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, delete, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from gateway import errors as E
from gateway.routes import (
    WITH_AUTH,
    JobId,
    caller,
    get_and_head,
    options_handlers,
    problems,
    services,
)
from schemas.api import Problem
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


_HANDLERS = [upload_file, get_file, delete_file, get_results_manifest]
FILE_ROUTES = options_handlers(_HANDLERS) + _HANDLERS
