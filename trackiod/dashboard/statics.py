"""The dashboard's own files (``static/``): served from memory, named by their content so a browser keeps them.

The page loads 11 scripts and 2 stylesheets. Served as files with ``Cache-Control: no-cache``, each navigation
asked for all of them again (a runs page spent its first ~200 ms on that on the shared 2-core machine). Now
``index.html`` names every script and stylesheet with ``?v=`` and the first 16 hex digits of the SHA-256 of its
content, and carries an import map that gives each module that name too, so the imports between modules (written
without versions, ``./util.js``) reach the same URLs. A file asked for under its current name is sent with
``Cache-Control: immutable`` for a year: a browser that has opened the dashboard once takes its scripts from its
cache without a request, and a changed file gets a new name, so nobody runs a stale script. A file asked for
without ``v`` (or under an old one) is answered ``no-cache`` with an ETag (``If-None-Match`` gets 304).

Files are kept in memory and read again when their size or modification time changes (the benchmarks swap the
static folder to compare versions).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

#: How long a browser may keep a file asked for under its content's name (it never changes under that name).
IMMUTABLE = "public, max-age=31536000, immutable"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
#: ``href="/static/..."`` and ``src="/static/..."`` in index.html: the files it names, to be given versions.
_REFERENCE = re.compile(r'((?:href|src)=")/static/([^"?]+)(")')
_IMPORT_MAP_MARK = "<!-- import map -->"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    version: str  # the first 16 hex digits of the SHA-256 of body
    media_type: str
    stamp: tuple[int, int]  # (size, mtime_ns) when read


class StaticFiles:
    """The files under ``root`` as :class:`StaticFile`, and index.html with every reference versioned."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lock = threading.Lock()
        self._files: dict[Path, StaticFile] = {}
        self._index: tuple[tuple[tuple[Path, tuple[int, int]], ...], bytes] | None = None

    def get(self, path: Path) -> StaticFile:
        """``path`` (a file inside root, already checked by the caller) from memory, read again if it changed."""
        info = path.stat()
        stamp = (info.st_size, info.st_mtime_ns)
        with self._lock:
            known = self._files.get(path)
        if known is not None and known.stamp == stamp:
            return known
        body = path.read_bytes()
        media_type = _MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        fresh = StaticFile(body, hashlib.sha256(body).hexdigest()[:16], media_type, stamp)
        with self._lock:
            self._files[path] = fresh
        return fresh

    def index(self) -> bytes:
        """index.html with ``?v=`` on each script and stylesheet and the import map of every module."""
        modules = sorted(self.root.rglob("*.js"))
        page = self.get(self.root / "index.html")
        stamps = tuple((p, self.get(p).stamp) for p in [self.root / "index.html", *modules])
        with self._lock:
            cached = self._index
        if cached is not None and cached[0] == stamps:
            return cached[1]
        text = page.body.decode("utf-8")
        text = _REFERENCE.sub(lambda m: f"{m[1]}{self.url(m[2])}{m[3]}", text)
        imports = {
            f"/static/{p.relative_to(self.root).as_posix()}": self.url(p.relative_to(self.root).as_posix())
            for p in modules
        }
        import_map = f'<script type="importmap">{json.dumps({"imports": imports})}</script>'
        body = text.replace(_IMPORT_MAP_MARK, import_map, 1).encode("utf-8")
        with self._lock:
            self._index = (stamps, body)
        return body

    def url(self, relative: str) -> str:
        """The versioned URL of ``relative`` (a path under root); unversioned if there is no such file."""
        path = self.root / relative
        if not path.is_file():
            return f"/static/{relative}"
        return f"/static/{relative}?v={self.get(path).version}"

    def response(self, request: Request, path: Path) -> Response:
        """The file, cached for a year when asked for under its current version, else revalidated by its ETag."""
        item = self.get(path)
        etag = f'"{item.version}"'
        if request.query_params.get("v") == item.version:
            headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
        else:
            headers = {"Cache-Control": "no-cache", "ETag": etag}
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
        return Response(item.body, media_type=item.media_type, headers=headers)
