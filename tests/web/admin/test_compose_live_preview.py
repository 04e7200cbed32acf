"""The composer's live preview in Debian's Chromium: the email beside the form follows what is typed
(merge tags filled for the chosen reader, mistakes shown instead of a message), nothing is saved by
previewing, at 1280 and 390 px, axe-clean at every level; screenshots in the artefacts folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from course.campaigns.service import tag_subscribers
from course.models import AdminRole, Campaign, Subscriber
from tests.support.admin_fixtures import PASSWORD, make_admin
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import WebStack

pytestmark = pytest.mark.browser


def test_the_preview_follows_the_form_as_it_is_typed(admin_live_stack: WebStack, artefacts: Path) -> None:
    from playwright.sync_api import expect

    now = admin_live_stack.clock.now()
    with admin_live_stack.sessions.begin() as session:
        for address, name in (("ann@example.org", "Ann Lee"), ("ben@example.org", "")):
            session.add(Subscriber(email=address, name=name, timezone="UTC", status="active", created_at=now))
        session.flush()
        for address in ("ann@example.org", "ben@example.org"):
            tag_subscribers(session, address, ["readers"])
    make_admin(admin_live_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=now)
    base = admin_live_stack.settings.base_url
    problems: list[str] = []
    console_errors: list[str] = []
    with chromium() as browser:
        for label in VIEWPORTS:
            context = new_context(browser, label)
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
            page.goto(f"{base}/admin/login?next=/admin/campaigns/new")
            page.fill("#email", "editor@example.org")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("New campaign")
            frame = page.frame_locator("iframe[name=live-preview]")
            page.fill("#subject", "Rising news")
            page.fill("#tags_any", "readers")
            page.fill("#body_markdown", 'Dear {{ first_name | default: "baker" }},\n\nYour address: {{ email }}.')
            expect(frame.locator("body")).to_contain_text("Dear Ann,")  # the audience's first reader
            expect(frame.locator("body")).to_contain_text("Your address: ann@example.org.")
            page.fill("#preview_as", "ben@example.org")
            expect(frame.locator("body")).to_contain_text("Dear baker,")
            page.screenshot(path=artefacts / f"compose-live-preview-{label}.png", full_page=True)
            page.locator(".preview-panel").screenshot(path=artefacts / f"compose-live-preview-panel-{label}.png")
            problems.extend(axe_violations(page, f"compose@{label}"))
            page.fill("#body_markdown", "Hi {{ frist_name }}")
            expect(frame.locator("body")).to_contain_text("{{ frist_name }} names no merge tag")
            page.screenshot(path=artefacts / f"compose-live-preview-mistake-{label}.png", full_page=True)
            context.close()
    with admin_live_stack.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0  # previewing saved nothing
    assert not console_errors, console_errors
    assert not problems, "\n".join(problems)
