"""The dashboard's own files named by their content (trackiod.dashboard.statics): cached for a year under their
name, revalidated without it, renamed when they change."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.support.dashboard import client, settings_for
from trackiod.dashboard.statics import IMMUTABLE, StaticFiles


def test_index_names_every_script_and_stylesheet_by_its_content(tmp_path: Path) -> None:
    with client(settings_for(tmp_path / "home")) as http:
        page = http.get("/")
        assert page.headers["cache-control"] == "no-cache"
        named = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert named and all(re.search(r"\?v=[0-9a-f]{16}$", url) for url in named), named
        imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', page.text)[1])["imports"]
        assert imports["/static/util.js"].startswith("/static/util.js?v=")
        assert "/static/media.js" in imports, "modules imported later (import()) are named too"
        kept = http.get(imports["/static/util.js"])
        assert kept.status_code == 200 and kept.headers["cache-control"] == IMMUTABLE
        assert kept.headers["content-type"].startswith("text/javascript")
        plain = http.get("/static/util.js")
        assert plain.headers["cache-control"] == "no-cache" and plain.content == kept.content
        again = http.get("/static/util.js", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        stale = http.get("/static/util.js?v=0000000000000000")
        assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache", "an old name: revalidate"


def test_a_changed_file_gets_a_new_name(tmp_path: Path) -> None:
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text('<!-- import map -->\n<script type="module" src="/static/a.js"></script>\n')
    script = root / "a.js"
    script.write_text("export const a = 1;\n")
    files = StaticFiles(root)
    first = files.index().decode()
    script.write_text("export const a = 22;\n")
    os.utime(script, ns=(1, 1))  # a different stamp even within the file system's time resolution
    second = files.index().decode()
    versions = [re.search(r'src="/static/a\.js\?v=(\w+)"', text)[1] for text in (first, second)]
    assert versions[0] != versions[1]
    assert f'"/static/a.js": "/static/a.js?v={versions[1]}"' in second
    assert files.get(script).body == b"export const a = 22;\n"
