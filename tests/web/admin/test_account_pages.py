"""The account features around sign-in, through the pages as a browser uses them: the
authenticator's QR code, times in the admin's own time zone, and invitations of new admins."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from zoneinfo import ZoneInfo

import segno
from fastapi.testclient import TestClient

from course.models import AdminRole
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, make_token, sign_in
from tests.support.web_fixtures import WebStack, csrf_token_of
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



_TIME = re.compile(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>')


def _times_on(html: str) -> list[tuple[datetime, str, str]]:
    return [(datetime.fromisoformat(moment), title, shown) for moment, title, shown in _TIME.findall(html)]


def _shown_in(zone: str, moment: datetime) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def test_admin_times_show_in_the_admins_zone_from_the_browser_at_first_sign_in_with_utc_on_hover(
    web_stack: WebStack, client: TestClient
) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
    # The sign-in form carries the browser's zone (admin.js fills it in); an admin with none set adopts it.
    page = client.get("/admin/login")
    assert re.search(r'<input type="hidden" name="time_zone" value="" data-fill-timezone>', page.text)
    client.post(
        "/admin/login",
        data={"email": "owner@example.org", "password": PASSWORD, "time_zone": "Europe/Berlin", "csrf_token": csrf_token_of(page.text)},
    )
    for path in ("/admin/account", "/admin/admins", "/admin/tokens"):
        html = client.get(path).text
        times = _times_on(html)
        assert times, f"no times on {path}"
        for moment, title, shown in times:
            assert moment.utcoffset() == timedelta(0)
            assert title == f"{moment.day} {moment:%b %Y, %H:%M} UTC"
            assert shown == _shown_in("Europe/Berlin", moment), path
    assert 'value="Europe/Berlin"' in client.get("/admin/account").text

    # A later sign-in from another zone changes nothing: the setting is the admin's own.
    sign_in(client, "owner@example.org")
    page = client.get("/admin/login")
    client.post(
        "/admin/login",
        data={"email": "owner@example.org", "password": PASSWORD, "time_zone": "Asia/Tokyo", "csrf_token": csrf_token_of(page.text)},
    )
    assert all(shown.endswith(("CET", "CEST")) for _, _, shown in _times_on(client.get("/admin/account").text))

    # The account page changes it; a made-up zone is refused with a message and changes nothing.
    bad = client.post("/admin/account/time-zone", data={"time_zone": "Mars/Olympus", "csrf_token": csrf_of(client)})
    assert bad.status_code == 422 and "Unknown time zone 'Mars/Olympus'" in unescape(bad.text)
    assert 'value="Europe/Berlin"' in client.get("/admin/account").text
    saved = client.post(
        "/admin/account/time-zone", data={"time_zone": "America/New_York", "csrf_token": csrf_of(client)}, follow_redirects=False
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/account?changed=time-zone"
    for moment, _, shown in _times_on(client.get("/admin/tokens").text):
        assert shown == _shown_in("America/New_York", moment)
    # Cleared: UTC, until the browser's zone is filled in and saved again.
    client.post("/admin/account/time-zone", data={"time_zone": "", "csrf_token": csrf_of(client)})
    account = client.get("/admin/account").text
    assert all(shown.endswith("UTC") for _, _, shown in _times_on(account))
    assert re.search(r'<input[^>]*name="time_zone" value=""[^>]*data-fill-timezone', account)
