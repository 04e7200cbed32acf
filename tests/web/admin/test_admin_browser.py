"""The web admin in Debian's Chromium (Playwright) against the app under uvicorn: sign in, the
campaign list and a campaign, the owner pages and the account page, each at 1280 and 390 px, each
checked by axe-core (no serious or critical violation) and screenshotted into the folder named by
COURSE_TEST_ARTEFACTS (its admin/ subfolder), or else pytest's temporary folder; the test prints where.
A console error (how a CSP violation shows up) fails the test."""

from __future__ import annotations

import re

from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import update

from course.campaigns.service import fan_out, refresh_campaign_status, schedule_campaign, tag_subscribers
from course.models import AdminRole, Campaign, CampaignStatus, Delivery, DeliveryState, Subscriber
from tests.support.admin_fixtures import PASSWORD, make_admin, make_token, must_change_password
from tests.support.browser import VIEWPORTS, chromium, new_context, serious_axe_violations
from tests.support.web_fixtures import WebStack

pytestmark = pytest.mark.browser

def seed_campaigns(stack: WebStack) -> dict[str, int]:
    """Readers, and campaigns in each state: done, sending half-way, scheduled, cancelled, draft."""
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        for number in range(40):
            session.add(Subscriber(email=f"reader{number}@example.org", name=f"Reader {number}", timezone="Europe/Berlin", status="active", created_at=now))
        session.flush()
        for number in range(40):
            tag_subscribers(session, f"reader{number}@example.org", ["readers"] + (["bakers"] if number % 2 else []))
        ids = {}
        for name, subject, tag in [
            ("October digest", "What we baked in October", "readers"),
            ("Rye week", "Five days of rye", "bakers"),
            ("Holiday schedule", "Our holiday hours", None),
            ("Spring preview", "Coming in spring: sourdough pastries", "readers"),
        ]:
            campaign = schedule_campaign(
                session, name=name, subject=subject, body_markdown=f"# {subject}\n\nHello!", segment_tag=tag,
                sender_name="The Bakery", sender_email="news@example.org", send_at=now + timedelta(hours=1), now=now,
            )  # fmt: skip
            ids[name] = campaign.id
        for name in ("October digest", "Rye week"):
            fan_out(session, ids[name], now=now)
        session.execute(update(Delivery).where(Delivery.campaign_id == ids["October digest"]).values(state=DeliveryState.SENT, sent_at=now))
        half = [row for row in session.query(Delivery.id).filter(Delivery.campaign_id == ids["Rye week"]).order_by(Delivery.id).limit(12)]
        session.execute(update(Delivery).where(Delivery.id.in_([r.id for r in half])).values(state=DeliveryState.SENT, sent_at=now))
        session.execute(update(Campaign).where(Campaign.id == ids["October digest"]).values(status=CampaignStatus.DONE))
        session.execute(update(Campaign).where(Campaign.id == ids["Holiday schedule"]).values(status=CampaignStatus.CANCELLED))
        session.execute(update(Campaign).where(Campaign.id == ids["Spring preview"]).values(status=CampaignStatus.DRAFT))
    return ids


def test_admin_pages_in_chromium_look_right_and_pass_axe(admin_live_stack: WebStack, artefacts: Path) -> None:
    from playwright.sync_api import expect

    stack = admin_live_stack
    ids = seed_campaigns(stack)
    now = stack.clock.now()
    make_admin(stack.sessions, "owner@example.org", AdminRole.OWNER, now=now)
    make_admin(stack.sessions, "editor@example.org", AdminRole.EDITOR, now=now)
    make_token(stack.sessions, AdminRole.EDITOR, now=now)
    base = stack.settings.base_url
    problems: list[str] = []
    console_errors: list[str] = []

    with chromium() as browser:
        for label in VIEWPORTS:
            context = new_context(browser, label)
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))

            def visit(name: str) -> None:
                page.screenshot(path=artefacts / f"{name}-{label}.png", full_page=True)
                problems.extend(serious_axe_violations(page, f"{name}@{label}"))

            page.goto(f"{base}/admin/campaigns")
            expect(page).to_have_url(f"{base}/admin/login?next=/admin/campaigns")
            visit("login")
            page.fill("#email", "owner@example.org")
            page.fill("#password", "wrong password here")
            page.click("button[type=submit]")
            expect(page.locator("[role=alert]")).to_contain_text("do not match")
            visit("login-error")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Campaigns")
            expect(page.locator("tbody tr")).to_have_count(4 if label == "desktop" else 5)
            visit("campaigns")
            page.click("text=Rye week")
            expect(page.locator("h1")).to_contain_text("Rye week")
            visit("campaign")
            if label == "desktop":
                # Live progress: rows settle while the page is open; the numbers follow, no reload.
                rye = ids["Rye week"]
                with stack.sessions.begin() as session:
                    session.execute(update(Delivery).where(Delivery.campaign_id == rye, Delivery.state == DeliveryState.PENDING).values(state=DeliveryState.SENT, sent_at=now))
                    refresh_campaign_status(session, rye)
                expect(page.locator("[data-progress=sent]")).to_have_text("20", timeout=15_000)
                expect(page.locator("[data-progress-status] .badge")).to_have_text("done")
                expect(page.locator("[data-progress-note]")).to_contain_text("Finished")
            page.goto(f"{base}/admin/campaigns/{ids['October digest']}")
            page.click("text=Preview")
            expect(page.locator("h1")).to_have_text("Preview")
            page.fill("#subscriber", "reader3@example.org")
            page.click("text=Show")
            expect(page.locator(".envelope")).to_contain_text("Reader 3 <reader3@example.org>")
            expect(page.frame_locator(".email-frame").locator("h1").first).to_have_text("What we baked in October")
            if label == "desktop":
                page.fill("#test_address", "me@example.net")
                page.click("text=Send test")
                expect(page.locator("[role=status]").first).to_contain_text("A test is on its way to me@example.net")
                (test_mail,) = stack.deliver()
                assert test_mail["Subject"] == "[Test] What we baked in October"
            visit("preview")
            page.goto(f"{base}/admin/campaigns/new")
            expect(page.locator("h1")).to_have_text("New campaign")
            visit("compose")
            # The catalogue's guides: Insert puts a Markdown link around the selected words (or at the cursor).
            body = page.locator("#body_markdown")
            body.fill("Read our guide first. ")
            body.evaluate("element => element.setSelectionRange(5, 14)")
            page.locator(".guide-list button", has_text="Insert").first.click()
            expect(body).to_have_value("Read [our guide](https://example.com/guides/feeding-a-starter) first. ")
            body.evaluate("element => element.setSelectionRange(element.value.length, element.value.length)")
            page.locator(".guide-list button", has_text="Insert").nth(1).click()
            expect(body).to_have_value(re.compile(r"first\. \[Sourdough Glossary\]\(https://[^)]+\)$"))
            expect(page.locator("[data-insert-status]")).to_have_text("Inserted a link to Sourdough Glossary.")
            visit("compose-guide-links")
            page.fill("#name", f"Spring letter {label}")
            page.fill("#subject", "")
            page.fill("#body_markdown", "Hello <script>alert(1)</script>")
            page.fill("#tags_any", "bakers")
            page.locator("#subject").evaluate("element => element.removeAttribute('required')")
            page.click("button[value=save]")
            expect(page.locator("[role=alert]")).to_contain_text("Nothing was saved")
            visit("compose-errors")
            page.fill("#subject", "Spring is here")
            page.fill("#body_markdown", "# Spring\n\nNew loaves every **Friday**.")
            page.click("button[value=count]")
            expect(page.locator(".notice[role=status]").last).to_contain_text("20 subscribers would get this campaign")
            page.click("button[value=schedule]")
            expect(page.locator("#schedule-title")).to_have_text("Schedule")
            visit("campaign-draft")
            page.goto(f"{base}/admin/admins")
            visit("admins")
            page.goto(f"{base}/admin/tokens")
            visit("tokens")
            page.fill("#token-name", "Publishing hook")
            page.click("text=Create token")
            expect(page.locator("#secret-value")).to_contain_text("course_")
            visit("token-created")
            page.goto(f"{base}/admin/account")
            visit("account")
            page.click("text=Set up an authenticator")
            expect(page.locator("h1")).to_have_text("Set up an authenticator")
            visit("totp-setup")
            page.goto(f"{base}/admin/campaigns/{ids['Rye week'] + 100}")
            visit("not-found")
            page.goto(f"{base}/admin/campaigns")
            page.click("text=Sign out")
            expect(page).to_have_url(f"{base}/admin/login")

            # An editor with a one-time password: chooses their own, turns on an authenticator, gets
            # recovery codes, then signs in with password and code.
            editor_email = f"editor-{label}@example.org"
            must_change_password(stack.sessions, make_admin(stack.sessions, editor_email, AdminRole.EDITOR, now=now))
            page.fill("#email", editor_email)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Choose your password")
            visit("password")
            page.fill("#current_password", PASSWORD)
            page.fill("#new_password", "an editor's own long password")
            page.fill("#repeat_password", "an editor's own long password")
            page.click("text=Save password")
            page.goto(f"{base}/admin/account")
            page.click("text=Set up an authenticator")
            totp = pyotp.TOTP(page.locator("#totp-key").inner_text().strip())
            page.fill("#code", totp.at(stack.clock.now()))
            page.click("text=Turn on")
            expect(page.locator("h1")).to_have_text("Your recovery codes")
            visit("recovery-codes")
            page.click("text=Sign out")
            page.fill("#email", editor_email)
            page.fill("#password", "an editor's own long password")
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Authenticator code")
            visit("login-code")
            stack.clock.advance(timedelta(seconds=30))  # the code that turned it on is spent
            page.fill("#code", totp.at(stack.clock.now()))
            page.click("text=Continue")
            expect(page.locator("h1")).to_have_text("Dashboard")
            context.close()

    assert problems == [], "\n".join(problems)
    # The wrong password (401), the missing campaign (404) and the refused draft (422) log their status, as any such answer
    # does; nothing else may (a CSP violation would).
    expected = ("status of 401 (Unauthorized)", "status of 404 (Not Found)", "status of 422 (Unprocessable Entity)")
    assert [error for error in console_errors if not error.endswith(expected)] == []
