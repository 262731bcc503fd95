"""``/ui``: the web page for tenants and operators. Plain HTML, CSS and JavaScript shipped in
the package (``static/``), no CDN and no build step; the page talks to the public API with
the key the person signs in with, kept in the tab's ``sessionStorage`` only.

The page's shell is served with a strict Content-Security-Policy (scripts and styles from
this origin only, nothing inline), so data the page shows (job ids, error messages) cannot
run as code even if the script mishandled it; the script writes text only (``textContent``).
"""

from __future__ import annotations

from pathlib import Path

from litestar import HttpMethod, Response, route
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).resolve().parent / "static"
INDEX = (STATIC / "index.html").read_bytes()
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@route("/ui", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def ui_index() -> Response[bytes]:
    """The page's shell; everything else is static files and API calls."""
    return Response(INDEX, media_type="text/html; charset=utf-8",
                    headers=SECURITY_HEADERS)


UI_ROUTES = [
    ui_index,
    create_static_files_router(path="/ui/static", directories=[STATIC], include_in_schema=False,
                               cache_control=CacheControlHeader(no_cache=True),
                               name="ui-static"),
]
