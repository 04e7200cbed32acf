"""The stylesheet and script the pages load, served from memory with content-hashed URLs.

At start-up every file under course/web/static/ is read once, hashed (SHA-256, 12 hex digits) and,
where it pays, gzipped once. Pages link `/static/site.<hash>.css` (the `static_url` template
function), an address whose bytes never change, so browsers and proxies keep it a year without
asking again (`immutable`); a new deploy changes the hash, so nobody sees a stale stylesheet. The
plain name (`/static/site.css`) still answers, for pages cached before a deploy, with a short
max-age and an ETag. Nothing touches the disk per request."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

LONG_CACHE = "public, max-age=31536000, immutable"
SHORT_CACHE = "public, max-age=300"
# Below this, gzip's header and the Content-Encoding handshake cost more than they save.
GZIP_MINIMUM_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    name: str  # "site.css"
    hashed_name: str  # "site.0123456789ab.css"
    body: bytes
    gzipped: bytes | None  # None: not worth it
    media_type: str
    etag: str


def load_asset(path: Path) -> Asset:
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:12]
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    worth_it = len(body) >= GZIP_MINIMUM_BYTES and len(packed) < 0.9 * len(body)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "text/javascript"):
        media_type += "; charset=utf-8"
    return Asset(
        name=path.name,
        hashed_name=f"{path.stem}.{digest}{path.suffix}",
        body=body,
        gzipped=packed if worth_it else None,
        media_type=media_type,
        etag=f'"{digest}"',
    )


class StaticAssets:
    """An ASGI app for /static: every file of `directory`, by plain and by hashed name."""

    def __init__(self, directory: Path, prefix: str = "/static") -> None:
        self.prefix = prefix
        assets = [load_asset(path) for path in sorted(directory.iterdir()) if path.is_file()]
        self.by_name = {asset.name: asset for asset in assets}
        self._routes = {asset.name: (asset, False) for asset in assets}
        self._routes.update({asset.hashed_name: (asset, True) for asset in assets})

    def url(self, name: str) -> str:
        """The hashed address of a file, for templates; a name we do not have is a template bug."""
        return f"{self.prefix}/{self.by_name[name].hashed_name}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        found = self._routes.get(scope["path"].rsplit("/", 1)[-1]) if scope["path"].count("/") <= 2 else None
        if found is None or request.method not in ("GET", "HEAD"):
            status = 404 if found is None else 405
            await Response("not found" if status == 404 else "method not allowed", status_code=status,
                           media_type="text/plain")(scope, receive, send)
            return
        asset, hashed = found
        headers = {"cache-control": LONG_CACHE if hashed else SHORT_CACHE, "etag": asset.etag}
        if asset.gzipped is not None:
            headers["vary"] = "Accept-Encoding"
        if request.headers.get("if-none-match") == asset.etag:
            await Response(status_code=304, headers=headers)(scope, receive, send)
            return
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.gzipped
            headers["content-encoding"] = "gzip"
        response = Response(body if request.method == "GET" else b"", media_type=asset.media_type, headers=headers)
        if request.method == "HEAD":
            response.headers["content-length"] = str(len(body))
        await response(scope, receive, send)
