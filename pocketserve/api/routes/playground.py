"""The playground: one page at `/` and its files under `/playground/`, served as they ship.

The page is a client of the public API like any other, so these paths do no work and need no
key (the page asks for one when the API answers 401). Every answer carries a strict
Content-Security-Policy: the page has no inline script or style and loads nothing from
elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import pocketserve

PAGE_DIR = Path(pocketserve.__file__).parent / "playground"
# Paths the API-key middleware lets through when the playground is on.
OPEN_PATHS = ["/", "/playground/*"]

_CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "worker-src 'self'",
    "img-src 'self' data: blob:", "media-src 'self' blob: data:", "connect-src 'self'",
    "object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    # Revalidate each time: a new version of the server shows its new page at once.
    "Cache-Control": "no-cache",
}


class _PageFiles(StaticFiles):
    """StaticFiles that adds the page's security headers to every file."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


async def _index() -> FileResponse:
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers=HEADERS)


def install(app: FastAPI) -> None:
    """Serve the page; not part of the API, so not in /openapi.json (as /docs is not)."""
    app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.mount("/playground", _PageFiles(directory=PAGE_DIR), name="playground")
