"""A cached page served gzipped: the pieces compressed apart and the visitor's value in a stored
block of its own per request must make one valid gzip stream, whatever the value and wherever the
holes are."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, strategies as st

from course.web.cache import PreparedPage

HOLE = "csrfPlaceholderQ7vX2kLm9Tz4"


@pytest.mark.parametrize(
    "html",
    [
        f"<form><input value=\"{HOLE}\"></form>" + "<option>Europe/Berlin</option>" * 500,
        f"{HOLE}starts and ends{HOLE}",
        "no hole at all " * 100,
        f"two {HOLE} holes {HOLE} and more",
        "",
    ],
)
def test_the_gzipped_page_is_the_plain_page(html: str) -> None:
    page = PreparedPage.build(html, HOLE)
    for token in ("a" * 43, "other-token_0123", ""):
        expected = html.replace(HOLE, token).encode()
        assert page.plain(token) == expected
        assert gzip.decompress(page.gzipped(token)) == expected  # checks the CRC and the length too


@given(st.text(max_size=300), st.text(alphabet="abcXYZ019-_", max_size=64), st.integers(0, 3))
def test_any_text_and_token(body: str, token: str, holes: int) -> None:
    html = HOLE.join([body] * (holes + 1))
    page = PreparedPage.build(html, HOLE)
    assert gzip.decompress(page.gzipped(token)) == html.replace(HOLE, token).encode()


def test_a_big_page_compresses_like_the_whole_page_would() -> None:
    html = f"<input value=\"{HOLE}\">" + "".join(f"<option>Zone/{n}</option>" for n in range(600))
    page = PreparedPage.build(html, HOLE)
    whole = len(zlib.compress(html.encode(), 6))
    assert len(page.gzipped("t" * 43)) < whole * 1.1 + 64
