"""The account features in Debian's Chromium against the app under uvicorn, at 1280 and 390 px,
each page and the invitation email checked by axe-core (no serious or critical violation) and
screenshotted (COURSE_TEST_ARTEFACTS, else pytest's temporary folder): the browser's time zone
adopted at sign-in (admin.js) and times shown in it, an invitation sent from the Admins page, its
email, and the invitee choosing a password through the link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course.models import AdminRole
from tests.support.admin_fixtures import PASSWORD, make_admin
from tests.support.browser import VIEWPORTS, chromium, new_context, serious_axe_violations
from tests.support.web_fixtures import WebStack, link_in

pytestmark = pytest.mark.browser


def test_time_zone_from_the_browser_and_an_invitation_from_email_to_password_in_chromium(admin_live_stack: WebStack, artefacts: Path) -> None:
    from playwright.sync_api import expect

    stack = admin_live_stack
    base = stack.settings.base_url
    problems: list[str] = []
    console_errors: list[str] = []
    with chromium() as browser:
        for label in VIEWPORTS:
            owner = f"owner-{label}@example.org"
            make_admin(stack.sessions, owner, AdminRole.OWNER, now=stack.clock.now())
            context = new_context(browser, label, timezone_id="Asia/Tokyo")
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))

            def visit(name: str) -> None:
                page.screenshot(path=artefacts / f"{name}-{label}.png", full_page=True)
                problems.extend(serious_axe_violations(page, f"{name}@{label}"))

            page.goto(f"{base}/admin/login")
            page.fill("#email", owner)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Dashboard")
            page.goto(f"{base}/admin/account")
            expect(page.locator("#time-zone")).to_have_value("Asia/Tokyo")  # adopted from the browser at sign-in
            last = page.locator(".page-head time")
            expect(last).to_contain_text("JST")
            assert re.fullmatch(r"\d+ \w{3} \d{4}, \d\d:\d\d UTC", last.get_attribute("title") or "")
            visit("account-time-zone")

            page.goto(f"{base}/admin/admins")
            invitee = f"new-{label}@example.org"
            page.fill("#new-email", invitee)
            page.select_option("#new-role", "editor")
            page.click("text=Send invitation")
            expect(page.locator(".notice[role=status]")).to_contain_text("Invitation sent")
            expect(page.locator("#pending-title")).to_have_text("Pending invitations")
            visit("admins-pending")

            [mail] = stack.deliver()
            html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
            letter = context.new_page()  # a blank page: the admin's CSP is not the mail client's
            letter.set_content(html, wait_until="load")
            assert letter.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[label]["width"], "the email is wider than the window"
            letter.screenshot(path=artefacts / f"invitation-email-{label}.png", full_page=True)
            problems.extend(serious_axe_violations(letter, f"invitation-email@{label}"))

            invited = new_context(browser, label).new_page()
            invited.goto(link_in(mail, "/admin/invitation/"))
            expect(invited.locator("h1")).to_have_text("Join the course admin")
            invited.screenshot(path=artefacts / f"invitation-accept-{label}.png", full_page=True)
            problems.extend(serious_axe_violations(invited, f"invitation-accept@{label}"))
            invited.fill("#password", "the invitee's own password")
            invited.fill("#repeat_password", "the invitee's own password")
            invited.click("text=Save password and sign in")
            expect(invited.locator("h1")).to_have_text("Dashboard")
            expect(invited.locator(".who .email")).to_have_text(invitee)
            context.close()
    assert problems == [], "\n".join(problems)
    assert console_errors == [], console_errors
