"""The admin dashboard (issue #26): signups, confirmations, unsubscribes and bounces per day,
deliveries per day, campaigns in flight, heartbeats, and what needs attention; the same as JSON."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from course.audience.enrollment import enroll, find_subscriber, get_or_create_subscriber, unsubscribe
from course.content.catalogue import find_course
from course.ledger import suppress
from course.models import AdminRole, SubscriberStatus
from tests.support.admin_fixtures import PASSWORD, make_admin, make_token, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import COURSE_SLUG, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _two_days(stack: WebStack) -> None:
    """Day 1: Ann, Bob and Cat (pending) sign up; lesson 1 to Ann and Bob. Day 2: Bob unsubscribes,
    Ann's address bounces, Dan signs up."""
    with stack.sessions.begin() as session:
        course = find_course(session, COURSE_SLUG)
        assert course is not None
        for name in ("ann", "bob"):
            enroll(session, get_or_create_subscriber(session, f"{name}@example.org", now=stack.clock.now()), course, now=stack.clock.now())
        get_or_create_subscriber(session, "cat@example.org", now=stack.clock.now(), status=SubscriberStatus.PENDING)
    stack.deliver()
    stack.clock.advance(timedelta(days=1))
    with stack.sessions.begin() as session:
        unsubscribe(session, find_subscriber(session, "bob@example.org"), course_id=None, now=stack.clock.now())  # type: ignore[arg-type]
        suppress(session, [find_subscriber(session, "ann@example.org").id], now=stack.clock.now())  # type: ignore[union-attr]
        get_or_create_subscriber(session, "dan@example.org", now=stack.clock.now())


def test_the_dashboard_counts_each_day_and_says_what_needs_attention(web_stack: WebStack, client: TestClient) -> None:
    _two_days(web_stack)
    token = make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
    answer = client.get("/api/admin/dashboard", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    board = answer.json()
    assert len(board["days"]) == 90 and board["days"][-1] == web_stack.clock.now().date().isoformat()
    last_two = {name: values[-2:] for name, values in board["series"].items()}
    assert last_two["signups"] == [3, 1] and last_two["confirmations"] == [2, 1]
    assert last_two["unsubscribes"] == [0, 1] and last_two["bounces"] == [0, 1] and last_two["sent"] == [2, 0]
    assert any("dispatcher" in note for note in board["attention"])  # no dispatcher heartbeat in a test

    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    page = client.get("/admin/dashboard")
    assert page.status_code == 200
    assert "<dt>Signups</dt><dd>4</dd>" in page.text and "<dt>Mail sent</dt><dd>2</dd>" in page.text
    assert "Needs attention" in page.text and 'href="/admin/dashboard" aria-current="page"' in page.text


@pytest.mark.browser
def test_the_dashboard_passes_axe_at_desktop_and_phone_widths(admin_live_stack: WebStack, artefacts: Path) -> None:
    _two_days(admin_live_stack)
    make_admin(admin_live_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=admin_live_stack.clock.now())
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{admin_live_stack.settings.base_url}/admin/dashboard")
            page.fill("#email", "viewer@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:text('Dashboard')")
            page.screenshot(path=artefacts / f"dashboard-{label}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"dashboard@{label}: wider than the window"
            problems.extend(axe_violations(page, f"dashboard@{label}", impacts=("serious", "critical")))
            context.close()
    assert problems == [], "\n".join(problems)
