"""Issue #22, item 2: admin CSRF by a planted cookie.

The admin's CSRF field was an HMAC of any `csrf` cookie the server had minted, so a cookie minted for
an anonymous client (from /admin/login), planted through a sibling subdomain next to the owner's
session, let a cross-site post create an owner. Now the field of a signed-in admin is an HMAC over
their session, the sign-in forms have a cookie of their own (`__Host-` on https, which no sibling
can set), and every admin POST from another site is refused by its Origin or Sec-Fetch-Site."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import Admin, AdminInvitation, AdminRole
from course.web.app import create_app
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, sign_in
from tests.support.web_fixtures import COURSE_SLUG, TEST_BASE_URL, WebStack, csrf_token_of
from tests.support.web_fixtures import *  # noqa: F403

NEW_OWNER = {"email": "mallory@example.org", "role": "owner"}


def admin_count(stack: WebStack) -> int:
    """Admins and invitations: everyone given a way into the admin."""
    with stack.sessions() as session:
        return sum(session.scalar(select(func.count()).select_from(table)) or 0 for table in (Admin, AdminInvitation))


def signed_in_owner(stack: WebStack, client: TestClient) -> None:
    make_admin(stack.sessions, "owner@example.org", AdminRole.OWNER, now=stack.clock.now())
    assert sign_in(client, "owner@example.org") == "/admin/dashboard"


def test_a_planted_cookie_minted_for_an_anonymous_client_does_not_invite_an_owner(web_stack: WebStack, client: TestClient) -> None:
    signed_in_owner(web_stack, client)
    before = admin_count(web_stack)
    with TestClient(create_app(web_stack.settings), base_url=TEST_BASE_URL) as attacker:
        for page in ("/admin/login", f"/courses/{COURSE_SLUG}"):
            # The attacker's own anonymous visit: whatever cookies it was given, and the field that went with them.
            attacker.cookies.clear()
            field = csrf_token_of(attacker.get(page).text)
            planted = dict(attacker.cookies.items())
            assert planted, "the page set a cookie to plant"
            for name, value in planted.items():
                client.cookies.set(name, value)  # planted through a sibling subdomain, next to the owner's session
            forged = client.post("/admin/invitations", data={**NEW_OWNER, "csrf_token": field}, follow_redirects=False)
            assert forged.status_code == 403, (page, forged.status_code)
            assert admin_count(web_stack) == before
    # The owner's own form still works with those cookies in the jar.
    made = client.post("/admin/invitations", data={**NEW_OWNER, "csrf_token": csrf_of(client, "/admin/admins")}, follow_redirects=False)
    assert made.status_code in (200, 303) and admin_count(web_stack) == before + 1


def test_the_field_is_bound_to_the_session_that_got_it(web_stack: WebStack, client: TestClient) -> None:
    signed_in_owner(web_stack, client)
    make_admin(web_stack.sessions, "other@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    with TestClient(create_app(web_stack.settings), base_url=TEST_BASE_URL) as other:
        sign_in(other, "other@example.org")
        others_field = csrf_of(other, "/admin/admins")
    before = admin_count(web_stack)
    forged = client.post("/admin/invitations", data={**NEW_OWNER, "csrf_token": others_field}, follow_redirects=False)
    assert forged.status_code == 403 and admin_count(web_stack) == before
    # Signing out and in again is a new session: the old page's field is dead.
    old_field = csrf_of(client, "/admin/admins")
    client.post("/admin/logout", data={"csrf_token": old_field}, follow_redirects=False)
    sign_in(client, "owner@example.org")
    stale = client.post("/admin/invitations", data={**NEW_OWNER, "csrf_token": old_field}, follow_redirects=False)
    assert stale.status_code == 403 and admin_count(web_stack) == before


def test_a_post_from_another_site_is_refused_whatever_its_token(web_stack: WebStack, client: TestClient) -> None:
    signed_in_owner(web_stack, client)
    before = admin_count(web_stack)
    field = csrf_of(client, "/admin/admins")
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "http://testserver.evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "cross-site", "origin": "null"},
        {"sec-fetch-site": "same-site", "origin": "http://sibling.testserver"},
        {"sec-fetch-site": "cross-site", "origin": TEST_BASE_URL},  # the browser's Sec-Fetch-Site decides
    ):
        refused = client.post("/admin/invitations", data={**NEW_OWNER, "csrf_token": field}, headers=headers, follow_redirects=False)
        assert refused.status_code == 403, headers
        assert "another site" in refused.text
    assert admin_count(web_stack) == before
    # The sign-in form too (login CSRF: signing the victim in to the attacker's account).
    login_field = csrf_of(TestClient(create_app(web_stack.settings), base_url=TEST_BASE_URL), "/admin/login")
    refused = client.post(
        "/admin/login", data={"email": "owner@example.org", "password": PASSWORD, "csrf_token": login_field},
        headers={"origin": "https://evil.example"}, follow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 403
    # Our own origin, a same-origin post as Chromium sends it (Origin null under our no-referrer
    # policy), and an old browser's post with no Sec-Fetch-Site and no or a null Origin are let
    # through to the CSRF field, which decides.
    allowed = ({"origin": TEST_BASE_URL}, {"sec-fetch-site": "same-origin", "origin": "null"}, {}, {"origin": "null"})
    for number, headers in enumerate(allowed):
        made = client.post("/admin/invitations", data={"email": f"ed{number}@example.org", "role": "editor", "csrf_token": field},
            headers=headers, follow_redirects=False,
        )  # fmt: skip
        assert made.status_code in (200, 303), (headers, made.status_code)
    assert admin_count(web_stack) == before + len(allowed)


def test_the_sign_in_form_has_a_cookie_of_its_own_no_sibling_can_set_on_https(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"base_url": "https://courses.example.org"})
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    with TestClient(create_app(settings), base_url="https://courses.example.org") as browser:
        page = browser.get("/admin/login")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-") and "Path=/" in cookie and "Secure" in cookie and "Domain" not in cookie
        field = csrf_token_of(page.text)
        # The public pages' cookie and field are no key to the sign-in form.
        browser.cookies.clear()
        public_field = csrf_token_of(browser.get(f"/courses/{COURSE_SLUG}").text)
        refused = browser.post(
            "/admin/login", data={"email": "owner@example.org", "password": PASSWORD, "csrf_token": public_field},
            follow_redirects=False,
        )  # fmt: skip
        assert refused.status_code == 403
        browser.cookies.clear()
        field = csrf_token_of(browser.get("/admin/login").text)
        signed_in = browser.post(
            "/admin/login", data={"email": "owner@example.org", "password": PASSWORD, "csrf_token": field},
            follow_redirects=False,
        )  # fmt: skip
        assert signed_in.status_code == 303
