"""The ``/openai/v1`` routes' answers to methods a path lacks, in OpenAI's error shape."""

from __future__ import annotations

from litestar import HttpMethod, Request, Response, route

from gateway import errors as E


def other_methods(path: str, allowed: set[HttpMethod]):
    """A 405 with ``Allow`` (and OPTIONS: 204) for the methods a path lacks, answered by the
    OpenAI router so it is in OpenAI's shape too. List it before the path's own handlers: a
    path's first handler decides whether Litestar adds an OPTIONS handler of its own."""
    allow = ", ".join(sorted({*allowed, HttpMethod.OPTIONS}))
    methods = [m for m in HttpMethod if m not in allowed]

    async def handler(request: Request) -> Response[None]:
        if request.method == HttpMethod.OPTIONS:
            return Response(None, status_code=204, headers={"Allow": allow})
        raise E.MethodNotAllowed(f"{request.method} is not allowed here; use {allow}",
                                 headers={"Allow": allow})

    return route(path, http_method=methods, include_in_schema=False,
                 name=f"openai other methods {path}")(handler)
