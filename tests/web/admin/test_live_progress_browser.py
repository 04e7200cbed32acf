"""Issue #21, defect 6: a campaign page opened while the campaign is scheduled (nothing in the
send queue yet) polls its progress, and shows the sending and the end without a reload, in
Debian's Chromium against the app under uvicorn."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from course.campaigns.service import fan_out, refresh_campaign_status, schedule_campaign, tag_subscribers
from course.models import AdminRole, Delivery, DeliveryState, Subscriber
from tests.support.admin_fixtures import PASSWORD, make_admin
from tests.support.browser import chromium, new_context, serious_axe_violations
from tests.support.web_fixtures import WebStack

pytestmark = pytest.mark.browser


def test_a_page_opened_while_scheduled_shows_the_progress_as_it_comes(admin_live_stack: WebStack) -> None:
    from playwright.sync_api import expect

    stack = admin_live_stack
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        for number in range(5):
            session.add(Subscriber(email=f"r{number}@example.org", name="", timezone="UTC", status="active", created_at=now))
        session.flush()
        for number in range(5):
            tag_subscribers(session, f"r{number}@example.org", ["readers"])
        campaign_id = schedule_campaign(
            session, name="Soon", subject="News", body_markdown="Hello", segment_tag="readers",
            sender_name="Bakery", sender_email="news@example.org", send_at=now + timedelta(hours=1), now=now,
        ).id  # fmt: skip
    make_admin(stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=now)
    base = stack.settings.base_url
    with chromium() as browser:
        context = new_context(browser, "desktop")
        page = context.new_page()
        page.goto(f"{base}/admin/login?next=/admin/campaigns/{campaign_id}")
        page.fill("#email", "viewer@example.org")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/admin/campaigns/{campaign_id}")
        expect(page.locator("[data-progress-waiting]")).to_be_visible()
        expect(page.locator("[data-progress-stats]")).to_be_hidden()  # no zeros before there is anything to count
        assert serious_axe_violations(page, "scheduled campaign") == []
        # The fan-out comes and every message goes out while the page stays open.
        with stack.sessions.begin() as session:
            fan_out(session, campaign_id, now=now)
            session.execute(update(Delivery).where(Delivery.campaign_id == campaign_id).values(state=DeliveryState.SENT, sent_at=now))
            refresh_campaign_status(session, campaign_id)
        expect(page.locator('[data-progress="sent"]')).to_have_text("5", timeout=10_000)
        expect(page.locator("[data-progress-status] .badge")).to_have_text("done")
        expect(page.locator("[data-progress-waiting]")).to_be_hidden()
        expect(page.locator("[data-progress-stats]")).to_be_visible()
        expect(page.get_by_text("Not sent yet")).to_have_count(0)
        expect(page.locator("[data-progress-note]")).to_contain_text("Finished: done. Its status changed")
        assert serious_axe_violations(page, "sent campaign") == []
        context.close()
