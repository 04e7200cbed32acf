"""The account features around sign-in, through the pages as a browser uses them: the
authenticator's QR code, times in the admin's own time zone, and invitations of new admins."""

from __future__ import annotations

import re
from html import unescape

import segno
from fastapi.testclient import TestClient

from course.models import AdminRole
from tests.support.admin_fixtures import csrf_of, make_admin, sign_in
from tests.support.web_fixtures import WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _modules_of_svg_path(path: str, *, scale: int, border: int) -> set[tuple[int, int]]:
    """The dark modules a segno SVG path draws: horizontal runs ("h5") along rows, moves in between."""
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for command, first, second in re.findall(r"([MmHh])(-?[\d.]+)(?:[ ,](-?[\d.]+))?", path):
        if command in "Mm":
            x, y = (float(first), float(second)) if command == "M" else (x + float(first), y + float(second))
        else:
            run = float(first)
            dark.update((int(y - 0.5) - border, int(x + step) - border) for step in range(int(run)))
            x += run
    return dark


def test_the_authenticator_setup_shows_a_qr_code_of_its_otpauth_link_drawn_on_our_server(
    web_stack: WebStack, client: TestClient
) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    setup = client.post("/admin/account/second-factor", data={"csrf_token": csrf_of(client)})
    assert setup.status_code == 200
    secret = re.search(r'id="totp-key">([A-Z2-7]+)<', setup.text).group(1)  # type: ignore[union-attr]
    uri = unescape(re.search(r'<a href="(otpauth://[^"]+)"', setup.text).group(1))  # type: ignore[union-attr]
    assert f"secret={secret}" in uri

    svg = re.search(r"<svg\b[^>]*>.*?</svg>", setup.text, re.DOTALL)
    assert svg is not None, "no inline SVG on the setup page"
    assert 'role="img"' in svg.group(0) and "<title>" in svg.group(0)  # a name for screen readers
    assert "https://" not in setup.text.split("<main", 1)[1].split("</main>")[0].replace(uri, "")  # no QR service
    # The drawing is the QR code of exactly that link: its modules are segno's for the URI.
    path = re.search(r'<path[^>]* stroke="[^"]+" d="([^"]+)"', svg.group(0)).group(1)  # type: ignore[union-attr]
    expected = segno.make_qr(uri, error="m")  # a full QR code: authenticator apps read no Micro QR
    dark = {(row, col) for row, line in enumerate(expected.matrix) for col, bit in enumerate(line) if bit}
    assert _modules_of_svg_path(path, scale=1, border=4) == dark

