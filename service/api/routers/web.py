"""The web page at `/`: static files shipped in service/web (no CDN, no build step), open like /docs.

The page itself holds no data; it calls /models, /compress, /decompress and /compare with the user's API key
when one is needed. Only the files present in the package are served, by name, so no path can escape it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response

from service.api.problems import Problem, ProblemType

router = APIRouter(include_in_schema=False)

WEB_PACKAGE = "service.web"
ASSETS_PATH = "/web"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    # Everything from this origin and nothing else: the page works offline and cannot leak an image elsewhere.
    # blob: and data: carry the images the page makes itself (uploads, answers, the mask it paints).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _assets() -> dict[str, str]:
    """File name -> media type of every servable file in the package."""
    files = resources.files(WEB_PACKAGE)
    found = {}
    for entry in files.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            found[entry.name] = _MEDIA_TYPES[suffix]
    return found


ASSETS = _assets()


def _file(name: str) -> Response:
    if name not in ASSETS:
        raise Problem(ProblemType.NOT_FOUND, f"no such file: {ASSETS_PATH}/{name}")
    content = resources.files(WEB_PACKAGE).joinpath(name).read_bytes()
    return Response(content, media_type=ASSETS[name], headers=_HEADERS)


@router.get("/")
async def index() -> Response:
    return _file("index.html")


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> Response:
    return _file(name)
