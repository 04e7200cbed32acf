"""The dashboard's mail providers section and its JSON: each provider's state (a pause with its
reason), limits and use, from the gate `course providers` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from course.delivery.gate import gate_from_settings
from course.models import AdminRole, Campaign, CampaignStatus
from tests.support.admin_fixtures import PASSWORD, make_admin, make_token, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import WebStack
from tests.support.web_fixtures import *  # noqa: F403


def test_a_paused_provider_shows_on_the_dashboard_with_why(web_stack: WebStack, client: TestClient) -> None:
    gate = gate_from_settings(web_stack.settings)  # the web process's own (no Redis in this stack)
    gate.resume("default")
    gate.failed("default", "cannot connect to SMTP server 127.0.0.1:8025: refused", at_once=True)
    try:
        token = make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())
        board = client.get("/api/admin/dashboard", headers={"Authorization": f"Bearer {token}"}).json()
        (default,) = board["providers"]
        assert default["name"] == "default" and default["state"] == "paused" and "refused" in default["reason"]
        make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
        sign_in(client, "viewer@example.org")
        page = client.get("/admin/dashboard")
        assert page.status_code == 200
        assert "Mail providers" in page.text and "<strong>Paused</strong> until" in page.text and "refused" in page.text
    finally:
        gate.resume("default")


@pytest.mark.browser
def test_a_paused_provider_and_a_campaign_paused_by_the_system_pass_axe(admin_live_stack: WebStack, artefacts: Path) -> None:
    """The dashboard with a paused provider and the campaign page with the system's reason, at
    desktop and phone widths: axe-clean, no sideways scrolling."""
    stack = admin_live_stack
    gate = gate_from_settings(stack.settings)
    gate.resume("default")
    gate.failed("default", "cannot connect to SMTP server 127.0.0.1:8025: [Errno 111] Connection refused", at_once=True)
    make_admin(stack.sessions, "editor@example.org", AdminRole.EDITOR, now=stack.clock.now())
    with stack.sessions.begin() as session:
        campaign = Campaign(
            name="Spring letter", subject="Spring is coming", body_markdown="Hello.", sender_name="Newsletter",
            sender_email="newsletter@example.org", status=CampaignStatus.PAUSED, send_at=stack.clock.now(),
            created_at=stack.clock.now(), fanned_out_at=stack.clock.now(), paused_at=stack.clock.now(),
            paused_reason="31 of 120 messages bounced or failed (26%, more than the 20% allowed by COURSE_CAMPAIGN_MAX_ERROR_RATE)",
        )  # fmt: skip
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    problems: list[str] = []
    try:
        with chromium() as browser:
            for label, viewport in VIEWPORTS.items():
                context = new_context(browser, label)
                page = context.new_page()
                page.goto(f"{stack.settings.base_url}/admin/dashboard")
                page.fill("#email", "editor@example.org")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("h2:text('Mail providers')")
                for name, path in (("dashboard-providers", "/admin/dashboard"), ("campaign-system-pause", f"/admin/campaigns/{campaign_id}")):
                    page.goto(f"{stack.settings.base_url}{path}")
                    page.screenshot(path=artefacts / f"{name}-{label}.png", full_page=True)
                    if name == "dashboard-providers":  # the page is long: the new section on its own too
                        page.locator("section[aria-labelledby=providers-title]").screenshot(path=artefacts / f"{name}-section-{label}.png")
                    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"{name}@{label}: wider than the window"
                    problems.extend(axe_violations(page, f"{name}@{label}", impacts=("serious", "critical")))
                assert "Paused by the system." in page.inner_text("main")
                context.close()
    finally:
        gate.resume("default")
    assert problems == [], "\n".join(problems)
