"""The account features around sign-in, through the pages as a browser uses them: the
authenticator's QR code, times in the admin's own time zone, and invitations of new admins."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape
from zoneinfo import ZoneInfo

import segno
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from course.web.app import create_app
from course.models import Admin, AdminInvitation, AdminRole, Delivery
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, make_token, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack, csrf_token_of, link_in
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


def _invite(client: TestClient, email: str, role: str = "editor") -> None:
    answer = client.post("/admin/invitations", data={"email": email, "role": role, "csrf_token": csrf_of(client, "/admin/admins")}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def _pending_id(web_stack: WebStack, email: str) -> int:
    with web_stack.sessions() as session:
        found = session.scalar(select(AdminInvitation.id).where(AdminInvitation.email == email))
        assert found is not None
        return found


def _accept(owner: TestClient, link: str, password: str = "a new admin's own password"):  # type: ignore[no-untyped-def]
    """The invitee's own browser (no cookie of the owner's) opens the link and chooses a password."""
    browser = TestClient(owner.app, base_url=TEST_BASE_URL)
    path = link.removeprefix(TEST_BASE_URL)
    page = browser.get(path)
    if page.status_code != 200:
        return browser, page
    answer = browser.post(
        path, data={"password": password, "repeat_password": password, "csrf_token": csrf_token_of(page.text)}, follow_redirects=False
    )
    return browser, answer


def test_an_owner_invites_an_admin_by_email_whose_signed_link_works_once_and_leads_to_a_password(
    web_stack: WebStack, client: TestClient
) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    admins_page = client.get("/admin/admins").text
    assert "one-time password" not in admins_page  # nobody passes a password along any more
    bad = client.post("/admin/invitations", data={"email": "not an address", "role": "editor", "csrf_token": csrf_of(client, "/admin/admins")})
    assert bad.status_code == 422 and "not a valid email" in bad.text
    taken = client.post("/admin/invitations", data={"email": "owner@example.org", "role": "editor", "csrf_token": csrf_of(client, "/admin/admins")})
    assert taken.status_code == 422 and "already an admin" in taken.text

    _invite(client, "New.Editor@example.org")
    listed = client.get("/admin/admins").text
    assert "Pending invitations" in listed and "New.Editor@example.org" in listed
    again = client.post("/admin/invitations", data={"email": "new.editor@example.org", "role": "viewer", "csrf_token": csrf_of(client, "/admin/admins")})
    assert again.status_code == 422 and "invited already" in again.text

    # The mail goes through the ledger and the real sender, urgent, to the invited address.
    [mail] = web_stack.deliver()
    assert mail["To"] == "New.Editor@example.org" and "invited" in mail["Subject"]
    assert "List-Unsubscribe" not in mail and "72 hours" in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    link = link_in(mail, "/admin/invitation/")
    html_part = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert link in unescape(html_part)
    with web_stack.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.invitation_id.is_not(None))).one()
        assert row.subscriber_id is None and row.state == "sent" and row.kind == "admin_invitation"

    # A forged or altered link does nothing.
    token = link.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert _accept(client, f"{TEST_BASE_URL}/admin/invitation/{forged}")[1].status_code == 400

    # The link leads to choosing a password: the rules apply and a refusal keeps the link good.
    browser = TestClient(client.app, base_url=TEST_BASE_URL)
    page = browser.get(link.removeprefix(TEST_BASE_URL))
    assert page.status_code == 200 and "New.Editor@example.org" in page.text and "editor" in page.text
    short = browser.post(link.removeprefix(TEST_BASE_URL), data={"password": "short", "repeat_password": "short", "csrf_token": csrf_token_of(page.text)})
    assert short.status_code == 422 and "shorter than 12" in short.text
    browser, accepted = _accept(client, link)
    assert accepted.status_code == 303 and accepted.headers["location"] == "/admin/dashboard"
    assert browser.get("/admin/campaigns", follow_redirects=False).status_code == 200  # signed in, no password change asked
    assert "New.Editor@example.org" in browser.get("/admin/account").text
    with web_stack.sessions() as session:
        assert session.scalar(select(Admin.role).where(Admin.email == "New.Editor@example.org")) == "editor"
    fresh = TestClient(client.app, base_url=TEST_BASE_URL)
    assert sign_in(fresh, "new.editor@example.org", "a new admin's own password") == "/admin/dashboard"

    # It works once.
    used = _accept(client, link, "yet another password here")[1]
    assert used.status_code == 410 and "already used" in used.text
    assert "Pending invitations" not in client.get("/admin/admins").text  # accepted: no longer pending


def test_invitations_are_resent_revoked_and_expire_on_the_wall_clock(web_stack: WebStack, client: TestClient) -> None:
    from course.clock import set_wall_clock

    set_wall_clock(None)  # real time stays real while the test walks the project calendar (the fixture restores it)
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    _invite(client, "viewer@example.org", "viewer")
    [first] = web_stack.deliver()
    invitation_id = _pending_id(web_stack, "viewer@example.org")
    client.post(f"/admin/invitations/{invitation_id}", data={"change": "resend", "csrf_token": csrf_of(client, "/admin/admins")})
    [second] = web_stack.deliver()
    old_link, new_link = link_in(first, "/admin/invitation/"), link_in(second, "/admin/invitation/")
    assert old_link != new_link
    assert _accept(client, old_link)[1].status_code == 410  # a re-send replaces the link

    # The project's calendar running ahead (the demo clock) does not age it: expiry is wall-clock time.
    web_stack.clock.advance(timedelta(days=30))
    assert TestClient(client.app, base_url=TEST_BASE_URL).get(new_link.removeprefix(TEST_BASE_URL)).status_code == 200
    with web_stack.sessions.begin() as session:  # 72 hours pass on the wall clock
        session.execute(update(AdminInvitation).where(AdminInvitation.id == invitation_id).values(
            expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    expired = _accept(client, new_link)[1]
    assert expired.status_code == 410 and "expired" in expired.text
    assert "expired" in client.get("/admin/admins").text.split("Pending invitations")[-1]

    # Revoked before its mail went out: no mail, and the link would not work anyway.
    _invite(client, "gone@example.org", "owner")
    gone_id = _pending_id(web_stack, "gone@example.org")
    revoked = client.post(f"/admin/invitations/{gone_id}", data={"change": "revoke", "csrf_token": csrf_of(client, "/admin/admins")}, follow_redirects=False)
    assert revoked.status_code == 303
    assert web_stack.deliver() == []
    with web_stack.sessions() as session:
        assert session.scalar(select(Delivery.state).where(Delivery.invitation_id == gone_id)) == "cancelled"
    assert "gone@example.org" not in client.get("/admin/admins").text
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Admin)) == 1  # nobody was made




def test_invitations_on_postgresql(pg_web_stack: WebStack) -> None:
    """The same on PostgreSQL, where the sender takes rows over in one statement (a CTE joined to
    the subscriber, which an invitation's row has none of)."""
    with TestClient(create_app(pg_web_stack.settings), base_url=TEST_BASE_URL) as client:
        test_an_owner_invites_an_admin_by_email_whose_signed_link_works_once_and_leads_to_a_password(pg_web_stack, client)


def test_invitations_resent_revoked_and_expired_on_postgresql(pg_web_stack: WebStack) -> None:
    with TestClient(create_app(pg_web_stack.settings), base_url=TEST_BASE_URL) as client:
        test_invitations_are_resent_revoked_and_expire_on_the_wall_clock(pg_web_stack, client)


def test_a_new_secret_is_shown_once_after_a_redirect_and_a_reload_repeats_nothing(web_stack: WebStack, client: TestClient) -> None:
    """Post/redirect/get for the posts that make a secret: the answer is a redirect, the secret is on
    the page it leads to once, and a reload neither makes another token nor shows this one again."""
    from course.models import ApiToken

    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    made = client.post(
        "/admin/tokens", data={"name": "deploy hook", "role": "editor", "csrf_token": csrf_of(client, "/admin/tokens")},
        follow_redirects=False,
    )  # fmt: skip
    assert made.status_code == 303 and made.headers["location"] == "/admin/once"
    assert "course_" not in made.text and "course_" not in made.headers["location"]
    shown = client.get("/admin/once")
    token = re.search(r'id="secret-value">(course_[^<]+)<', shown.text)
    assert shown.status_code == 200 and token is not None
    assert client.get("/api/admin/campaigns", headers={"authorization": f"Bearer {token.group(1)}"}).status_code == 200
    again = client.get("/admin/once")
    assert again.status_code == 410 and "course_" not in again.text
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 1
    # Another admin's browser cannot read it, even with the cookie in hand.
    client.post(
        "/admin/tokens", data={"name": "second", "role": "viewer", "csrf_token": csrf_of(client, "/admin/tokens")},
        follow_redirects=False,
    )  # fmt: skip
    held = client.cookies.get("course_once", path="/admin/once")
    make_admin(web_stack.sessions, "other@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    other = TestClient(client.app, base_url=TEST_BASE_URL)
    sign_in(other, "other@example.org")
    other.cookies.set("course_once", held, path="/admin/once")
    assert other.get("/admin/once").status_code == 410
