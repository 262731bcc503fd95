"""The ``/openai/v1`` routes: one Router whose exception handler answers in OpenAI's error
shape, so the native routes keep problem+json. Authentication is the native guard (the same
keys); admission is the native one (the same rate limits, quotas and backlog limits).

The Batch API (``/files``, ``/batches``) is gateway/openai/batchroutes.py. Not offered,
answered with a 404 in OpenAI's shape: ``/uploads`` and listing or deleting files
(``code: not_offered``), every other OpenAI route (``code: unknown_url``).
"""

from __future__ import annotations

from typing import Annotated

from litestar import HttpMethod, Request, Response, Router, get, post, route
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath

from gateway import errors as E
from gateway.openai.batchroutes import BATCH_ROUTES
from gateway.openai.embeddings import EmbeddingsCall
from gateway.openai.errors import NotOffered, openai_error_response
from gateway.openai.methods import other_methods
from gateway.routes import WITH_AUTH, caller, services
from gateway.services import GatewayServices
from schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ErrorResponse, Model, ModelList

PREFIX = "/openai/v1"
_NOT_OFFERED = ("uploads",)
_DESCRIPTIONS = {
    400: "`invalid_request` (a malformed body, an empty or token-id `input`) or "
         "`unsupported_parameter` (`dimensions` other than the model's)",
    401: "`invalid_api_key`: missing or unknown API key (AuthenticationError)",
    404: "`model_not_found` (NotFoundError)",
    405: "`method_not_allowed`, with `Allow`",
    413: "`payload_too_large`: the body over INFERQ_MAX_BODY_BYTES, or more texts than the "
         "key's items per minute could ever admit",
    429: "`rate_limit_exceeded` / `quota_exceeded`, with Retry-After, retry-after-ms and "
         "RateLimit headers (the client retries)",
    503: "`overloaded` / `unavailable` (also: no runner serves the model), with Retry-After",
    504: "`timeout`: the embeddings did not finish within INFERQ_OPENAI_WAIT_S, with "
         "Retry-After (the client retries)",
}


def openai_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The error responses of a route, for the OpenAPI document (OpenAI's error shape)."""
    return {s: ResponseSpec(ErrorResponse, description=_DESCRIPTIONS[s],
                            generate_examples=False) for s in statuses}


@post("/embeddings", status_code=200, summary="OpenAI-compatible embeddings (waits for them)",
      responses=openai_errors(400, 401, 404, 405, 413, 429, 503, 504), **WITH_AUTH)
async def create_embeddings(
    request: Request,
    data: Annotated[EmbeddingsRequest, Body(
        description="`input`: one text or a list of up to 2048 texts. Unknown members and "
                    "token-id arrays are refused (400).")],
) -> Response[EmbeddingsResponse]:
    """Queue the texts as one ``interactive`` job of the caller's tenant, wait for it to end
    (at most ``openai_wait_s``) and answer as OpenAI does."""
    tenant, key_id = caller(request)
    answer, headers = await EmbeddingsCall(services(request)).run(
        tenant, key_id, data, traceparent=request.scope["state"].get("traceparent"))
    return Response(answer, headers=headers)


@get("/models", summary="The served models (aliases and pinned versions)",
     responses=openai_errors(401, 405, 429, 503), **WITH_AUTH)
async def list_models(request: Request) -> Response[ModelList]:
    """Every served model: its alias (newest version) and each pinned ``name@version``."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    return Response(ModelList(data=_models(svc)), headers=headers)


@get("/models/{model:str}", summary="One served model",
     responses=openai_errors(401, 404, 405, 429, 503), **WITH_AUTH)
async def get_model(request: Request, model: FromPath[str]) -> Response[Model]:
    """One served model by alias or ``name@version``; 404 ``model_not_found`` otherwise."""
    tenant, key_id = caller(request)
    svc = services(request)
    headers = await svc.admission.read(tenant, key_id)
    svc.submitter.resolve_model(model)  # 404 unless served, with the repository's reason
    found = next((m for m in _models(svc) if m.id == model), None)
    if found is None:  # served, but not spelled as listed (``minilm@01``)
        raise E.ModelNotFoundError(f"no model {model!r}; GET /openai/v1/models lists them")
    return Response(found, headers=headers)


def _models(svc: GatewayServices) -> list[Model]:
    out: list[Model] = []
    for name, versions in svc.repo.models().items():
        created = {v: int(svc.repo.version_dir(name, v).stat().st_mtime) for v in versions}
        out.append(Model(id=name, created=created[versions[-1]]))
        out += [Model(id=f"{name}@{v}", created=created[v]) for v in versions]
    return out


@route("/{rest:path}", http_method=list(HttpMethod), include_in_schema=False,
       name="openai not offered")
async def not_offered(request: Request, rest: FromPath[str]) -> None:
    """Any other path under the prefix: a 404 in OpenAI's shape that says what is missing."""
    first = rest.strip("/").split("/", 1)[0]
    if first in _NOT_OFFERED:
        raise NotOffered(
            f"the OpenAI {first} API is not offered by this server: upload a batch file in "
            "one request (POST /openai/v1/files, up to INFERQ_MAX_FILE_BYTES)")
    raise E.RouteNotFound(f"Invalid URL ({request.method} {request.url.path}): this server "
                          "offers /openai/v1/embeddings, /models, /files and /batches only")


OPENAI_ROUTER = Router(
    PREFIX,
    # The OPTIONS/405 handlers first: a path's first handler decides whether Litestar adds
    # an OPTIONS handler of its own (which would clash with theirs).
    route_handlers=[
        other_methods("/embeddings", {HttpMethod.POST}),
        other_methods("/models", {HttpMethod.GET}),
        other_methods("/models/{model:str}", {HttpMethod.GET}),
        *BATCH_ROUTES, create_embeddings, list_models, get_model, not_offered,
    ],
    exception_handlers={Exception: openai_error_response, HTTPException: openai_error_response},
    tags=["OpenAI-compatible"],
)
