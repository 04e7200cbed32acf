"""The stylesheet and script: linked by content-hashed address, kept a year by browsers, gzipped
when asked, and still answering by plain name for pages cached before a deploy."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from course.web.app import STATIC_DIR
from course.web.static_assets import LONG_CACHE, SHORT_CACHE, StaticAssets, load_asset


def test_pages_link_the_hashed_addresses_which_are_cached_for_a_year(client: TestClient) -> None:
    page = client.get("/").text
    (css,) = re.findall(r'href="(/static/site\.[0-9a-f]{12}\.css)"', page)
    (js,) = re.findall(r'src="(/static/site\.[0-9a-f]{12}\.js)"', page)
    digest = hashlib.sha256((STATIC_DIR / "site.css").read_bytes()).hexdigest()[:12]
    assert css == f"/static/site.{digest}.css"
    answer = client.get(css, headers={"accept-encoding": "identity"})
    assert answer.status_code == 200 and answer.headers["cache-control"] == LONG_CACHE
    assert answer.content == (STATIC_DIR / "site.css").read_bytes()
    assert answer.headers["content-type"] == "text/css; charset=utf-8"
    assert "x-content-type-options" in answer.headers  # the security headers wrap static files too
    assert client.get(js).status_code == 200


def test_gzip_when_the_client_asks_and_an_etag_answers_304(client: TestClient) -> None:
    asset = load_asset(STATIC_DIR / "site.css")
    url = f"/static/{asset.hashed_name}"
    raw = client.stream("GET", url, headers={"accept-encoding": "gzip"})
    with raw as response:
        body = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip" and response.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == asset.body and len(body) < len(asset.body) / 2
    again = client.get(url, headers={"if-none-match": asset.etag})
    assert again.status_code == 304 and again.content == b""


def test_the_plain_name_still_answers_with_a_short_cache_and_unknown_files_are_404(client: TestClient) -> None:
    plain = client.get("/static/site.css")
    assert plain.status_code == 200 and plain.headers["cache-control"] == SHORT_CACHE
    assert client.get("/static/site.000000000000.css").status_code == 404
    assert client.get("/static/../settings.py").status_code == 404
    assert client.post("/static/site.css").status_code in (403, 405)  # CSRF or method: never served


def test_html_pages_are_gzipped_when_asked_and_small_answers_are_not(client: TestClient) -> None:
    with client.stream("GET", "/courses/sourdough-from-scratch", headers={"accept-encoding": "gzip"}) as response:
        packed = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
    html = gzip.decompress(packed)
    assert b"Sourdough from Scratch" in html and len(packed) * 3 < len(html)
    small = client.post("/api/subscriptions", json={"course": "nope", "email": "a@example.org"},
                        headers={"accept-encoding": "gzip"})
    assert small.status_code == 404 and "content-encoding" not in small.headers


def test_admin_pages_are_never_compressed(client: TestClient) -> None:
    """BREACH: the admin pages carry CSRF tokens next to text an attacker may choose."""
    page = client.get("/admin/login", headers={"accept-encoding": "gzip"})
    assert page.status_code == 200 and len(page.content) > 1024
    assert "content-encoding" not in page.headers
    error = client.get("/admin/no-such-page", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in error.headers


def test_assets_are_read_once_at_start(tmp_path: Path) -> None:
    (tmp_path / "a.css").write_text("body{}" * 400)
    (tmp_path / "tiny.js").write_text("x")
    assets = StaticAssets(tmp_path)
    (tmp_path / "a.css").write_text("changed")
    assert assets.by_name["a.css"].body.startswith(b"body{}")
    assert assets.by_name["tiny.js"].gzipped is None  # under the size where gzip pays
    assert assets.url("a.css") == f"/static/{assets.by_name['a.css'].hashed_name}"
