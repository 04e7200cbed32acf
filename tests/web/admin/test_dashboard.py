"""The admin dashboard (issue #26): signups, confirmations, unsubscribes and bounces per day,
deliveries per day, campaigns in flight, heartbeats, and what needs attention; the same as JSON."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sqlalchemy.orm import Session

from course.audience.enrollment import find_subscriber, unsubscribe, unsubscribe_in_one
from course.campaigns.service import schedule_campaign
from course.audience.subscriptions import ConfirmOutcome, SignupOutcome, check_signup, confirm, sign_up
from course.content.catalogue import find_course
from course.ledger import suppress
from course.models import AdminRole, Course
from course.ratelimit import RateLimit
from tests.support.admin_fixtures import PASSWORD, make_admin, make_token, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from course.web.app import create_app
from tests.support.web_fixtures import COURSE_SLUG, TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _sign_up(session: Session, course: Course, email: str, *, now: datetime, confirm_it: bool) -> int:
    """A signup as the signup worker handles it, and (confirm_it) its confirmation link followed:
    the paths that write the events the dashboard counts."""
    details, problems = check_signup(email, "", "Europe/Berlin")
    assert details is not None, problems
    outcome, _ = sign_up(session, course, details, now=now, address_limit=RateLimit("signup-address", 100, timedelta(hours=1)), address_key=email)
    assert outcome == SignupOutcome.CONFIRMATION_QUEUED
    subscriber = find_subscriber(session, email)
    assert subscriber is not None
    if confirm_it:
        assert confirm(session, subscriber.id, course.id, now=now).outcome == ConfirmOutcome.CONFIRMED
    return subscriber.id


def _two_days(stack: WebStack) -> None:
    """Day 1: Ann, Bob and Cat sign up, Ann and Bob confirm; lesson 1 to Ann and Bob. Day 2: Bob
    unsubscribes (one-click), Ann's address bounces, Dan signs up and confirms."""
    with stack.sessions.begin() as session:
        course = find_course(session, COURSE_SLUG)
        assert course is not None
        for name in ("ann", "bob", "cat"):
            _sign_up(session, course, f"{name}@example.org", now=stack.clock.now(), confirm_it=name != "cat")
    stack.deliver()
    stack.clock.advance(timedelta(days=1))
    with stack.sessions.begin() as session:
        bob = find_subscriber(session, "bob@example.org")
        assert bob is not None
        if session.get_bind().dialect.name == "postgresql":  # the one-click endpoint's own statement
            email, _ = unsubscribe_in_one(session.connection(), bob.id, course_id=None, now=stack.clock.now())
            assert email == "bob@example.org"
        else:
            unsubscribe(session, bob, course_id=None, now=stack.clock.now())
        suppress(session, [find_subscriber(session, "ann@example.org").id], now=stack.clock.now())  # type: ignore[union-attr]
        _sign_up(session, course, "dan@example.org", now=stack.clock.now(), confirm_it=True)


def _check_the_api(stack: WebStack, client: TestClient) -> None:
    token = make_token(stack.sessions, AdminRole.VIEWER, now=stack.clock.now())
    answer = client.get("/api/admin/dashboard", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    board = answer.json()
    assert len(board["days"]) == 90 and board["days"][-1] == stack.clock.now().date().isoformat()
    last_two = {name: values[-2:] for name, values in board["series"].items()}
    assert last_two["signups"] == [3, 1] and last_two["confirmations"] == [2, 1]  # from the event record's counters
    assert last_two["unsubscribes"] == [0, 1] and last_two["bounces"] == [0, 1] and last_two["sent"] == [5, 0]  # 3 confirmation mails, lesson 1 twice
    assert sum(board["series"]["signups"]) == 4 and sum(board["series"]["failed"]) == 0
    assert any("dispatcher" in note for note in board["attention"])  # no dispatcher heartbeat in a test


def test_the_dashboard_counts_each_day_and_says_what_needs_attention(web_stack: WebStack, client: TestClient) -> None:
    _two_days(web_stack)
    _check_the_api(web_stack, client)

    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    page = client.get("/admin/dashboard")
    assert page.status_code == 200
    assert "<dt>Signups</dt><dd>4</dd>" in page.text and "<dt>Mail sent</dt><dd>5</dd>" in page.text
    assert "Needs attention" in page.text and 'href="/admin/dashboard" aria-current="page"' in page.text


def test_the_dashboard_counts_the_same_on_postgresql(pg_web_stack: WebStack) -> None:
    """The same days on PostgreSQL, where Bob leaves through the one-click endpoint's single
    statement (it writes the event and its counter in CTEs of its own)."""
    _two_days(pg_web_stack)
    with TestClient(create_app(pg_web_stack.settings), base_url=TEST_BASE_URL) as client:
        _check_the_api(pg_web_stack, client)


@pytest.mark.browser
def test_the_dashboard_passes_axe_at_desktop_and_phone_widths(admin_live_stack: WebStack, artefacts: Path) -> None:
    _two_days(admin_live_stack)
    with admin_live_stack.sessions.begin() as session:  # a newsletter scheduled a week out: in flight, nothing sent yet
        schedule_campaign(
            session, name="Winter baking letter", subject="Winter baking", body_markdown="Rye season.", segment_tag=None,
            sender_name="Bread at Home", sender_email="letter@example.org",
            send_at=admin_live_stack.clock.now() + timedelta(days=7), now=admin_live_stack.clock.now(),
        )  # fmt: skip
    make_admin(admin_live_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=admin_live_stack.clock.now())
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{admin_live_stack.settings.base_url}/admin")  # the admin's home
            page.fill("#email", "viewer@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:text('Dashboard')")
            assert page.url.endswith("/admin/dashboard")
            assert page.locator("progress").count() == 1 and page.locator("svg.chart").count() == 2
            page.screenshot(path=artefacts / f"dashboard-{label}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"dashboard@{label}: wider than the window"
            problems.extend(axe_violations(page, f"dashboard@{label}", impacts=("serious", "critical")))
            context.close()
    assert problems == [], "\n".join(problems)


def test_a_paused_provider_and_a_campaign_paused_on_errors_need_attention(web_stack: WebStack, client: TestClient) -> None:
    """What the providers' gate and the campaigns' error-rate check paused is on the dashboard, with
    the way out; a campaign paused by hand (no reason) is not."""
    from course.delivery.gate import gate_from_settings
    from course.models import Campaign, CampaignStatus

    gate = gate_from_settings(web_stack.settings)
    gate.failed("default", "connection refused by relay.example.net:587", at_once=True)
    try:
        with web_stack.sessions.begin() as session:
            for name, reason in (("errors", "19 of 60 deliveries failed or bounced (32 %, over the 20 % limit)"), ("by hand", None)):
                session.add(Campaign(
                    name=name, subject="S", body_markdown="B", sender_name="Bakery", sender_email="news@example.org",
                    status=CampaignStatus.PAUSED, paused_reason=reason,
                    created_at=web_stack.clock.now(), updated_at=web_stack.clock.now(),
                ))  # fmt: skip
        token = make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
        board = client.get("/api/admin/dashboard", headers={"Authorization": f"Bearer {token}"}).json()
        provider_lines = [line for line in board["attention"] if line.startswith("Mail provider default is paused")]
        assert len(provider_lines) == 1 and "connection refused" in provider_lines[0], board["attention"]
        assert "course providers --resume default" in provider_lines[0]
        campaign_lines = [line for line in board["attention"] if line.startswith("Campaign")]
        assert campaign_lines == ["Campaign \u201cerrors\u201d was paused: 19 of 60 deliveries failed or bounced (32 %, over the 20 % limit)"]
    finally:
        gate.resume("default")
    token = make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
    board = client.get("/api/admin/dashboard", headers={"Authorization": f"Bearer {token}"}).json()
    assert not [line for line in board["attention"] if line.startswith("Mail provider")]
