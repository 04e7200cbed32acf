"""The subscriber journey in Debian's Chromium, driven by Playwright, against the app served by
uvicorn on a real port, with a real SMTP server and the real dispatcher and sender:

course page (time zone filled by the page's script) -> signup -> confirmation mail -> confirm ->
lesson 1 -> preferences (new send time) -> view in browser -> unsubscribe from the lesson's link
-> days later, nothing more arrives.

Every page is screenshotted at 1280 and 390 px and checked by axe-core (no serious or critical
violation, colour contrast included); the screenshots land in the folder named
by COURSE_TEST_ARTEFACTS, or else in pytest's temporary folder for the run; the test prints where.
Any console error fails the test: that is how a CSP violation shows up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from course.clock import ManualClock
from course.db import get_engine
from course.models import Delivery, DeliveryState, Subscriber
from course.web.app import create_app
from tests.support.browser import VIEWPORTS, chromium, held_port, serious_axe_violations, served
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, WebStack, link_in, prepare, web_settings

pytestmark = pytest.mark.browser


@pytest.fixture
def live_stack(tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer) -> Iterator[WebStack]:
    """The app under uvicorn in a thread, on a port it already holds (no race for a free one)."""
    listener = held_port()
    settings = web_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 't.db'}",
        base_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
        smtp_host=web_smtp.host,
        smtp_port=web_smtp.port,
    )
    stack = prepare(settings, web_clock, web_smtp)
    with served(create_app(settings), listener):
        yield stack
    get_engine(settings).dispose()


def test_signup_confirm_preferences_unsubscribe_in_chromium(live_stack: WebStack, artefacts: Path) -> None:
    from playwright.sync_api import expect

    base_url = live_stack.settings.base_url
    course_url = f"{base_url}/courses/{COURSE_SLUG}"
    console_errors: list[str] = []
    problems: list[str] = []

    with chromium() as browser:
        phone = browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, timezone_id="Europe/Berlin"
        )
        phone_page = phone.new_page()
        phone_page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        phone_page.goto(course_url)
        expect(phone_page.locator("#signup-timezone")).to_have_value("Europe/Berlin")
        phone_page.screenshot(path=artefacts / "course-phone-touch.png", full_page=True)
        problems.extend(serious_axe_violations(phone_page, "course@phone-touch"))
        phone.close()

        context = browser.new_context(viewport=VIEWPORTS["desktop"], timezone_id="Europe/Berlin")
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))

        def look(name: str) -> None:
            """The page as it is now, at 1280 and at 390 px: a screenshot of each, and axe-core's verdict."""
            for label, viewport in VIEWPORTS.items():
                page.set_viewport_size(viewport)
                page.screenshot(path=artefacts / f"{name}-{label}.png", full_page=True)
                problems.extend(serious_axe_violations(page, f"{name}@{label}"))
            page.set_viewport_size(VIEWPORTS["desktop"])

        page.goto(base_url + "/")
        look("index")
        page.goto(f"{course_url}/embed")
        look("embed")

        # 1. The course page: the script fills the time zone; the person fills the rest.
        page.goto(course_url)
        expect(page.locator("h1")).to_have_text("Sourdough from Scratch")
        expect(page.locator("#signup-timezone")).to_have_value("Europe/Berlin")
        look("course")
        page.fill("#signup-email", "rosa@example.org")
        page.fill("#signup-name", "Rosa")
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Check your inbox")
        look("check-inbox")

        # 2. The confirmation mail, and the page its link opens.
        (confirmation,) = live_stack.deliver()
        # The confirmation greets by the name typed with the signup; no header names anyone until confirmed.
        assert confirmation["To"] == "rosa@example.org"
        assert "Hi Rosa," in confirmation.get_body(("plain",)).get_content()
        page.goto(link_in(confirmation, "/confirm/"))
        look("confirm")
        page.click("text=Yes, start the course")
        expect(page.locator("h1")).to_have_text("You are in")
        look("confirmed")

        # 3. Lesson 1 comes at the next dispatch; its preferences link changes the send time.
        live_stack.clock.advance(timedelta(minutes=1))
        (lesson,) = live_stack.deliver()
        assert lesson["Subject"].startswith("Lesson 1 of")
        assert lesson["To"] == "Rosa <rosa@example.org>", "confirmed: the signup's name is the reader's now"
        page.goto(link_in(lesson, "/preferences/"))
        expect(page.locator("h1")).to_have_text("Your courses")
        page.fill("input[name=send_time]", "18:30")
        page.click("button[value=send_time]")
        expect(page.locator(".notice-ok")).to_contain_text("Saved")
        look("preferences")
        with live_stack.sessions() as session:
            subscriber = session.scalars(select(Subscriber).where(Subscriber.email == "rosa@example.org")).one()
            due = session.scalars(
                select(Delivery.due_at).where(
                    Delivery.subscriber_id == subscriber.id, Delivery.state == DeliveryState.PENDING
                )
            ).all()
        assert due and all(moment.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "18:30" for moment in due)

        page.goto(link_in(lesson, "/view/"))
        expect(page.locator("h1")).to_contain_text(lesson["Subject"].split(": ", 1)[1])
        look("view-lesson")

        # 4. Unsubscribe from the lesson's own link: one page, one button.
        page.goto(link_in(lesson, "/u/"))
        look("unsubscribe")
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("You are unsubscribed")
        look("unsubscribed")

        assert console_errors == [], console_errors
        page.goto(base_url + "/confirm/not-a-real-token")  # its 400 is logged to the console, as it should be
        expect(page.locator("h1")).to_have_text("This link does not work")
        look("bad-link")

        # 6. Erasing one's own data: asked on the preferences page, confirmed by the mail's link.
        page.goto(link_in(lesson, "/preferences/"))
        page.click("button[value=erase_request]")
        expect(page.locator(".notice-ok")).to_contain_text("Open the link in it")
        (erase_mail,) = live_stack.deliver()
        page.goto(link_in(erase_mail, "/erase/"))
        expect(page.locator("h1")).to_have_text("Erase your data")
        look("erase")
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Your data is erased")
        look("erased")
        context.close()

    assert problems == [], "\n".join(problems)

    # 5. Days pass and the dispatcher runs: nothing more is sent.
    live_stack.clock.advance(timedelta(days=5))
    assert live_stack.deliver() == []
