"""Security rules run on real time while the course calendar runs fast (issue #21, defect 1).

`make run` runs the calendar at a course day every 10 s (8,640× real time). These tests set that
fast calendar and leave real time alone (set_wall_clock(None)): a session, a one-time password's
replacement, an authenticator code, a signed link and the per-IP signup limit must behave as they
do in real time, and the admin's last sign-in must be now, not weeks ahead."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from course.clock import FastClock, set_clock, set_wall_clock
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import Admin, AdminRole
from course.web.app import create_app
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, must_change_password, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

DEMO_SPEED = 8640.0  # `course run --day-seconds 10`


@pytest.fixture
def demo_calendar(web_stack: WebStack) -> Iterator[FastClock]:
    """The demo's fast course calendar; real time stays the system's."""
    clock = FastClock(origin=time.time(), speed=DEMO_SPEED)
    set_clock(clock)
    set_wall_clock(None)
    yield clock


def test_a_session_survives_idle_seconds_and_the_one_time_password_can_be_replaced(
    web_stack: WebStack, demo_calendar: FastClock, client: TestClient
) -> None:
    admin_id = make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=datetime.now(timezone.utc))
    must_change_password(web_stack.sessions, admin_id)
    assert sign_in(client, "owner@example.org") == "/admin/dashboard"
    page = client.get("/admin/account/password")
    assert page.status_code == 200 and "new_password" in page.text
    time.sleep(1.5)  # 3.6 hours of the demo's calendar, far past the hour a session may idle
    token = csrf_of(client, "/admin/account/password")
    changed = client.post(
        "/admin/account/password",
        data={"current_password": PASSWORD, "new_password": "my own new password", "repeat_password": "my own new password", "csrf_token": token},
        follow_redirects=False,
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/admin/account?changed=password"
    time.sleep(1.5)
    assert client.get("/admin/campaigns", follow_redirects=False).status_code == 200
    # `course admin list` shows this sign-in now, not weeks ahead on the course calendar.
    with web_stack.sessions() as session:
        last = session.scalar(select(Admin.last_login_at).where(Admin.id == admin_id))
    assert last is not None and abs(last - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert demo_calendar.now() - datetime.now(timezone.utc) > timedelta(hours=5)  # the calendar did run fast


def test_an_authenticator_code_of_real_time_turns_the_second_factor_on(
    web_stack: WebStack, demo_calendar: FastClock, client: TestClient
) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=datetime.now(timezone.utc))
    sign_in(client, "owner@example.org")
    setup = client.post("/admin/account/second-factor", data={"csrf_token": csrf_of(client)})
    secret = re.search(r'id="totp-key">([A-Z2-7]+)<', setup.text).group(1)  # type: ignore[union-attr]
    sealed = re.search(r'name="sealed" value="([^"]+)"', setup.text).group(1)  # type: ignore[union-attr]
    codes_page = client.post(
        "/admin/account/second-factor/confirm", data={"sealed": sealed, "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_of(client)}
    )
    assert codes_page.status_code == 200
    assert len(re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", codes_page.text)) == 10


def test_a_form_sent_after_the_session_ended_says_so_on_the_sign_in_page(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    sign_in(client, "owner@example.org")
    token = csrf_of(client, "/admin/campaigns/new")
    web_stack.clock.advance(timedelta(minutes=web_stack.settings.admin_session_idle_minutes + 1))
    lost = client.post("/admin/campaigns/new", data={"name": "March", "csrf_token": token})
    assert lost.url.path == "/admin/login"
    assert "nothing was saved" in lost.text and 'role="alert"' in lost.text
    ended = client.get("/admin/campaigns")  # the stale cookie is still sent
    assert ended.url.path == "/admin/login" and "Your session ended" in ended.text


def test_a_signed_link_does_not_age_with_the_fast_calendar(web_stack: WebStack) -> None:
    set_clock(FastClock(origin=time.time(), speed=1e8))  # a week of calendar in 6 ms
    set_wall_clock(None)
    signer = signer_from_settings(web_stack.settings)
    token = signer.token(LinkPurpose.CONFIRM, 1, 2)
    time.sleep(0.05)
    assert signer.read(LinkPurpose.CONFIRM, token) == [1, 2]


def test_the_per_ip_signup_limit_holds_under_the_fast_calendar(web_stack: WebStack) -> None:
    set_clock(FastClock(origin=time.time(), speed=1e8))  # every request is in a window of its own
    set_wall_clock(None)
    settings = web_stack.settings.model_copy(update={"signup_limit_per_ip": 2})
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as browser:
        page = browser.get("/courses/sourdough-from-scratch")
        form = {"email": "", "timezone": "Europe/Berlin", "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)}  # type: ignore[union-attr]
        answers = [
            browser.post("/courses/sourdough-from-scratch", data={**form, "email": f"reader{n}@example.org"}).status_code
            for n in range(3)
        ]
    assert answers[:2] == [200, 200] and answers[2] == 429


def test_an_accepted_invitation_opens_a_session_on_real_time(
    web_stack: WebStack, demo_calendar: FastClock, client: TestClient
) -> None:
    """The invitee's first session starts now, not hours ahead on the demo's calendar (its idle and
    absolute limits are counted from there)."""
    from course.models import AdminInvitation, AdminSession
    from tests.support.web_fixtures import csrf_token_of

    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=datetime.now(timezone.utc))
    sign_in(client, "owner@example.org")
    invited = client.post(
        "/admin/invitations", data={"email": "new@example.org", "role": "editor", "csrf_token": csrf_of(client, "/admin/admins")},
        follow_redirects=False,
    )  # fmt: skip
    assert invited.status_code == 303, invited.text
    with web_stack.sessions() as session:  # the link its mail carries (the mail is due on the calendar)
        invitation = session.scalars(select(AdminInvitation).where(AdminInvitation.email == "new@example.org")).one()
    link = signer_from_settings(web_stack.settings).url(LinkPurpose.ADMIN_INVITATION, invitation.id, invitation.link_nonce)
    path = link.removeprefix(TEST_BASE_URL)
    time.sleep(0.5)  # 1.2 hours of the demo's calendar
    browser = TestClient(client.app, base_url=TEST_BASE_URL)
    form = browser.get(path)
    password = "the new editor's own password"
    accepted = browser.post(path, data={"password": password, "repeat_password": password, "csrf_token": csrf_token_of(form.text)}, follow_redirects=False)
    assert accepted.status_code == 303, accepted.text
    with web_stack.sessions() as session:
        started = session.scalars(
            select(AdminSession.created_at).join(Admin, Admin.id == AdminSession.admin_id).where(Admin.email == "new@example.org")
        ).one()
    assert abs(started - datetime.now(timezone.utc)) < timedelta(minutes=1), started
    assert browser.get("/admin/dashboard", follow_redirects=False).status_code == 200
