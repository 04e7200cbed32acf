"""Every lesson as the email it is (issue #26): the admin's lesson page shows it as a chosen reader
gets it (HTML in frames 600 and 375 px wide, and the text part) with account links that act on
nobody, and "send me this lesson" mails it to any address through the ledger, ahead of bulk mail,
marked [Test], in no count of the lesson, its links acting on nobody."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.content.catalogue import find_course
from course.models import AdminRole, Delivery, DeliveryKind, DeliveryPriority, EnrollmentStatus, Enrollment, Subscriber
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import COURSE_SLUG, WebStack
from tests.support.web_fixtures import *  # noqa: F403

LESSON = f"/admin/courses/{COURSE_SLUG}/lessons/2"


def _ann_reads_the_course(stack: WebStack) -> None:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        course = find_course(session, COURSE_SLUG)
        assert course is not None
        enroll(session, get_or_create_subscriber(session, "ann@example.org", name="Ann", now=now), course, now=now)


def _links(message: EmailMessage) -> list[str]:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(r"https?://[^\s)>]+", text.get_content())


def test_the_lesson_page_shows_the_email_as_the_chosen_reader_gets_it(web_stack: WebStack, client: TestClient) -> None:
    _ann_reads_the_course(web_stack)
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    page = client.get(f"{LESSON}?subscriber=ann@example.org")
    assert page.status_code == 200, page.text
    assert "Lesson 2 of 6: Flour, Water and a Jar" in page.text  # the subject
    assert "Hi Ann," in page.text  # the text part, greeting the reader
    assert "/test-mail/unsubscribe" in page.text and "/test-mail/preferences" in page.text
    assert "/u/" not in page.text  # no reader's signed unsubscribe link in the preview
    assert page.text.count(f'src="{LESSON}/preview.html?subscriber=ann%40example.org"') == 2  # 600 and 375 px
    assert "email-frame-600" in page.text and "email-frame-375" in page.text
    assert "Send me this lesson" not in page.text  # a viewer sees, an editor sends

    frame = client.get(f"{LESSON}/preview.html?subscriber=ann@example.org")
    assert frame.status_code == 200
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "Flour, Water and a Jar" in frame.text and "Ann" in frame.text and "/u/" not in frame.text

    unknown = client.get(f"{LESSON}?subscriber=nobody@example.org")
    assert "No subscriber has the address nobody@example.org: shown as ann@example.org instead." in unknown.text
    assert client.get(f"/admin/courses/{COURSE_SLUG}/lessons/99").status_code == 404


def test_send_me_this_lesson_goes_ahead_of_bulk_mail_in_no_count_and_acts_on_nobody(
    web_stack: WebStack, client: TestClient
) -> None:
    _ann_reads_the_course(web_stack)
    web_stack.deliver()  # Ann's lesson 1
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    csrf = csrf_of(client, LESSON)

    refused = client.post(f"{LESSON}/test", data={"csrf_token": csrf, "test_address": "not an address", "preview_as": "ann@example.org"})
    assert refused.status_code == 422 and "Invalid email address" in refused.text
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).where(Delivery.kind == DeliveryKind.LESSON_TEST)) == 0

    sent = client.post(
        f"{LESSON}/test", data={"csrf_token": csrf, "test_address": "me@example.net", "preview_as": "ann@example.org"},
        follow_redirects=False,
    )  # fmt: skip
    assert sent.status_code == 303
    assert "A test is on its way to me@example.net" in client.get(sent.headers["location"]).text
    with web_stack.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.kind == DeliveryKind.LESSON_TEST)).one()
        assert row.lesson_id is None and row.test_address == "me@example.net"
        assert row.priority == int(DeliveryPriority.URGENT)
        lesson_rows_before = session.scalar(select(func.count()).where(Delivery.kind == DeliveryKind.LESSON))

    (message,) = web_stack.deliver()  # lesson 2 is not due until tomorrow: only the test goes
    assert message["To"].endswith("<me@example.net>") or message["To"] == "me@example.net", message["To"]
    assert message["Subject"] == "[Test] Lesson 2 of 6: Flour, Water and a Jar"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Hi Ann," in text and "This is a test send" in text
    targets = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert len(targets) == 1 and urlsplit(targets[0]).path == "/test-mail/unsubscribe"
    links = _links(message)
    assert not [link for link in links if "/u/" in link or "/preferences/" in link], links
    for link in links:
        if "/test-mail/unsubscribe" in link:
            client.post(urlsplit(link).path)
    client.post(urlsplit(targets[0]).path, data={"List-Unsubscribe": "One-Click"})

    with web_stack.sessions() as session:  # nobody unsubscribed, the lesson's rows untouched, the test sent
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == "ann@example.org")) == "active"
        assert session.scalar(select(Enrollment.status)) == EnrollmentStatus.ACTIVE
        assert session.scalar(select(func.count()).where(Delivery.kind == DeliveryKind.LESSON)) == lesson_rows_before
        assert session.scalar(select(Delivery.state).where(Delivery.kind == DeliveryKind.LESSON_TEST)) == "sent"
    token_page = client.get(f"/admin/courses/{COURSE_SLUG}")
    assert '<td data-label="Received" class="num">0</td>' in token_page.text  # lesson 2: the test is in no count
    # Its "View in browser" shows it as sent, greeting nobody.
    (view,) = [link for link in links if "/view/" in link]
    shown = TestClient(client.app).get(urlsplit(view).path)
    assert shown.status_code == 200 and "Flour, Water and a Jar" in shown.text and "Hi Ann" not in shown.text


@pytest.mark.browser
def test_the_lesson_page_passes_axe_at_desktop_and_phone_widths(admin_live_stack: WebStack, artefacts: Path) -> None:
    _ann_reads_the_course(admin_live_stack)
    make_admin(admin_live_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=admin_live_stack.clock.now())
    base = admin_live_stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{base}{LESSON}")
            page.fill("#email", "editor@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h2:text('Send me this lesson')")
            frame = page.frame_locator("iframe.email-frame-375")
            frame.locator("text=Flour, Water and a Jar").first.wait_for()
            page.screenshot(path=artefacts / f"lesson-{label}.png", full_page=True)
            page.locator("iframe.email-frame-375").screenshot(path=artefacts / f"lesson-{label}-375.png")
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"lesson@{label}: wider than the window"
            problems.extend(axe_violations(page, f"lesson@{label}", impacts=("serious", "critical")))
            context.close()
    assert problems == [], "\n".join(problems)
