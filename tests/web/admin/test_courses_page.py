"""The "put the signup form on your own site" snippets are for publishers, so they live in the
admin (/admin/courses, any signed-in role), not on the course page readers see. The admin courses
page and a course's own page are axe-clean at 1280 and 390 px."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.content.catalogue import find_course
from course.models import AdminRole
from tests.support.admin_fixtures import PASSWORD, make_admin, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import COURSE_SLUG, WebStack


def test_the_public_course_page_shows_readers_no_publishers_box(client: TestClient) -> None:
    page = client.get(f"/courses/{COURSE_SLUG}")
    assert page.status_code == 200
    assert "Publishing this course" not in page.text
    assert "&lt;iframe" not in page.text and f"/courses/{COURSE_SLUG}/subscribe" not in page.text


def test_the_admin_lists_each_course_with_its_embed_snippets_after_sign_in(web_stack: WebStack, client: TestClient) -> None:
    assert client.get("/admin/courses", follow_redirects=False).status_code == 303  # sign in first
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    page = client.get("/admin/courses")
    assert page.status_code == 200
    text = html.unescape(page.text)
    base = web_stack.settings.base_url.rstrip("/")
    assert f'<iframe src="{base}/courses/{COURSE_SLUG}/embed" title="Sign up for Sourdough from Scratch"' in text
    assert f'<form action="{base}/courses/{COURSE_SLUG}/subscribe" method="post"' in text
    assert '<button type="submit">Start Sourdough from Scratch</button>' in text
    assert 'href="/admin/courses" aria-current="page"' in page.text  # in the navigation


@pytest.mark.browser
def test_the_admin_courses_page_passes_axe_at_desktop_and_phone_widths(admin_live_stack: WebStack, artefacts: Path) -> None:
    now = admin_live_stack.clock.now()
    with admin_live_stack.sessions.begin() as session:  # readers, so the funnel has bars to draw
        course = find_course(session, COURSE_SLUG)
        assert course is not None
        for name in ("ann", "bob"):
            enroll(session, get_or_create_subscriber(session, f"{name}@example.org", now=now), course, now=now)
    admin_live_stack.deliver()
    make_admin(admin_live_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=admin_live_stack.clock.now())
    base = admin_live_stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{base}/admin/courses")
            page.fill("#email", "viewer@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:text('Courses')")
            page.screenshot(path=artefacts / f"courses-{label}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"courses@{label}: wider than the window"
            problems.extend(axe_violations(page, f"courses@{label}", impacts=("serious", "critical")))
            page.click(f"a[href='/admin/courses/{COURSE_SLUG}']")  # the course's own page: lessons and funnel
            page.wait_for_selector("h2:text('Funnel')")
            page.screenshot(path=artefacts / f"course-{label}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"course@{label}: wider than the window"
            problems.extend(axe_violations(page, f"course@{label}", impacts=("serious", "critical")))
            context.close()
    assert problems == [], "\n".join(problems)
