"""Signing in to the web admin through its pages, as a browser does: the cookie's attributes,
wrong passwords and the throttle's message, the one-time password that must be changed, the
authenticator step, sign-out, and the owner pages that make admins and API tokens."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from course.models import Admin, AdminRole, ApiToken
from course.web.app import create_app
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, must_change_password, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def test_sign_in_sets_a_locked_down_cookie_and_returns_to_the_page_asked_for(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    first = client.get("/admin/tokens", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/admin/login?next=/admin/tokens"
    page = client.get(first.headers["location"])
    assert 'name="next" value="/admin/tokens"' in page.text
    response = client.post(
        "/admin/login",
        data={"email": "Owner@Example.org", "password": PASSWORD, "next": "/admin/tokens", "csrf_token": csrf_of(client, "/admin/login")},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/admin/tokens"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("course_admin=") and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # http base URL in this test
    assert client.get("/admin/tokens").status_code == 200
    # Another host is never a place to go back to.
    assert sign_in(client, "owner@example.org", next_path="https://evil.example/admin") == "/admin/dashboard"
    assert sign_in(client, "owner@example.org", next_path="//evil.example/admin") == "/admin/dashboard"


def test_the_cookie_is_secure_when_the_site_is_https(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"base_url": "https://courses.example.org"})
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    with TestClient(create_app(settings), base_url="https://courses.example.org") as browser:
        response = browser.post(
            "/admin/login",
            data={"email": "owner@example.org", "password": PASSWORD, "csrf_token": csrf_of(browser, "/admin/login")},
            follow_redirects=False,
        )
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def test_wrong_passwords_get_one_answer_then_a_clear_throttle_message(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    limit = web_stack.settings.admin_login_limit_per_account
    token = csrf_of(client, "/admin/login")
    answers = set()
    for email in ["owner@example.org", "nobody@example.org"]:
        response = client.post("/admin/login", data={"email": email, "password": "not the password", "csrf_token": token})
        assert response.status_code == 401
        answers.add(re.search(r'role="alert">([^<]+)<', response.text).group(1))  # type: ignore[union-attr]
    assert answers == {"That email address and password do not match an admin account."}  # who exists stays unsaid
    for _ in range(limit - 1):
        client.post("/admin/login", data={"email": "owner@example.org", "password": "not the password", "csrf_token": token})
    throttled = client.post("/admin/login", data={"email": "owner@example.org", "password": PASSWORD, "csrf_token": token})
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text and "this account" in throttled.text
    assert re.search(r"Try again in \d+ minutes?", throttled.text)
    assert int(throttled.headers["retry-after"]) > 0


def test_a_one_time_password_must_be_replaced_before_anything_else(web_stack: WebStack, client: TestClient) -> None:
    admin_id = make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    must_change_password(web_stack.sessions, admin_id)
    sign_in(client, "ed@example.org")
    assert client.get("/admin/campaigns", follow_redirects=False).headers["location"] == "/admin/account/password"
    token = csrf_of(client, "/admin/account/password")
    mismatch = client.post(
        "/admin/account/password",
        data={"current_password": PASSWORD, "new_password": "my own new password", "repeat_password": "typo", "csrf_token": token},
    )
    assert mismatch.status_code == 422 and "not the same" in mismatch.text
    short = client.post(
        "/admin/account/password",
        data={"current_password": PASSWORD, "new_password": "short", "repeat_password": "short", "csrf_token": token},
    )
    assert short.status_code == 422 and "shorter than 12" in short.text
    done = client.post(
        "/admin/account/password",
        data={"current_password": PASSWORD, "new_password": "my own new password", "repeat_password": "my own new password", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/admin/account?changed=password"
    assert client.get("/admin/campaigns").status_code == 200
    fresh = TestClient(client.app, base_url=TEST_BASE_URL)
    assert sign_in(fresh, "ed@example.org") == "401"
    assert sign_in(fresh, "ed@example.org", "my own new password") == "/admin/dashboard"


def test_authenticator_setup_then_sign_in_with_a_code(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    setup = client.post("/admin/account/second-factor", data={"csrf_token": csrf_of(client)})
    secret = re.search(r'id="totp-key">([A-Z2-7]+)<', setup.text).group(1)  # type: ignore[union-attr]
    sealed = re.search(r'name="sealed" value="([^"]+)"', setup.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/admin/account/second-factor/confirm", data={"sealed": sealed, "code": "000000", "csrf_token": csrf_of(client)})
    assert wrong.status_code == 422 and "does not match" in wrong.text
    now = web_stack.clock.now()
    codes_page = client.post(
        "/admin/account/second-factor/confirm", data={"sealed": sealed, "code": pyotp.TOTP(secret).at(now), "csrf_token": csrf_of(client)}
    )
    codes = re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", codes_page.text)
    assert len(codes) == 10

    browser = TestClient(client.app, base_url=TEST_BASE_URL)
    assert sign_in(browser, "owner@example.org", next_path="/admin/tokens") == "/admin/login/code?next=/admin/tokens"
    assert browser.get("/admin/tokens", follow_redirects=False).status_code == 303  # not in yet
    code_page = browser.get("/admin/login/code?next=/admin/tokens")
    bad = browser.post("/admin/login/code", data={"code": "111111", "next": "/admin/tokens", "csrf_token": csrf_of(browser, "/admin/login")})
    assert bad.status_code == 401 and "not right" in bad.text and code_page.status_code == 200
    # The code that turned the authenticator on is spent: it does not sign anyone in.
    replayed = browser.post("/admin/login/code", data={"code": pyotp.TOTP(secret).at(now), "next": "/admin/tokens", "csrf_token": csrf_of(browser, "/admin/login")})
    assert replayed.status_code == 401
    web_stack.clock.advance(timedelta(seconds=30))
    good = browser.post(
        "/admin/login/code",
        data={"code": pyotp.TOTP(secret).at(web_stack.clock.now()), "next": "/admin/tokens", "csrf_token": csrf_of(browser, "/admin/login")},
        follow_redirects=False,
    )
    assert good.headers["location"] == "/admin/tokens"
    assert browser.get("/admin/tokens").status_code == 200


def test_sign_out_ends_the_session_on_the_server(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    stolen = client.cookies.get("course_admin", path="/admin")
    assert stolen
    out = client.post("/admin/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert out.headers["location"] == "/admin/login"
    replay = TestClient(client.app, base_url=TEST_BASE_URL, cookies={"course_admin": stolen})
    assert replay.get("/admin/campaigns", follow_redirects=False).status_code == 303


def test_an_owner_makes_a_token_shown_once(web_stack: WebStack, client: TestClient) -> None:
    # (Admins are invited by email now: tests/web/admin/test_account_pages.py.)
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    make_admin(web_stack.sessions, "ed@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")

    made = client.post("/admin/tokens", data={"name": "CMS hook", "role": "viewer", "csrf_token": csrf_of(client)})
    raw = re.search(r'id="secret-value">([^<]+)<', made.text).group(1)  # type: ignore[union-attr]
    assert raw not in client.get("/admin/tokens").text  # the list shows only its first characters
    api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {raw}"})
    assert api.get("/api/admin/me").json() == {"role": "viewer"}
    assert api.get("/api/admin/tokens").status_code == 403
    with web_stack.sessions() as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.name == "CMS hook"))
        assert session.scalar(select(Admin.role).where(Admin.email == "ed@example.org")) == "editor"
    client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client)})
    assert api.get("/api/admin/me").status_code == 401
