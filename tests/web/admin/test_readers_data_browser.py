"""Readers' data in Debian's Chromium at 1280 and 390 px, each page checked by axe-core (no serious
or critical violation) and screenshotted: a CSV upload with bad rows, its page following the import
to the end, the per-row report downloaded and read; an erasure; the suppression list and the audit log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from course.audience.enrollment import get_or_create_subscriber
from course.models import AdminRole
from tests.support.admin_fixtures import PASSWORD, make_admin
from tests.support.browser import VIEWPORTS, chromium, new_context, serious_axe_violations
from tests.support.web_fixtures import COURSE_SLUG, WebStack

pytestmark = pytest.mark.browser

LISTING = "email;name;timezone;shoe size\nann-{label}@example.org;Ann;Europe/Berlin;38\nbad address;Bob;;\ncyd@example.org;Cyd;Mars/Base;\n=HYPERLINK(1)@x;;;\n"


def test_upload_report_erase_suppressions_and_audit_log_in_chromium(admin_live_stack: WebStack, artefacts: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    stack = admin_live_stack
    base = stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label in VIEWPORTS:
            owner = f"owner-{label}@example.org"
            make_admin(stack.sessions, owner, AdminRole.OWNER, now=stack.clock.now())
            with stack.sessions.begin() as session:
                reader = get_or_create_subscriber(session, f"erin-{label}@example.org", now=stack.clock.now()).id
            context = new_context(browser, label, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(15_000)

            def visit(name: str) -> None:
                page.screenshot(path=artefacts / f"{name}-{label}.png", full_page=True)
                problems.extend(serious_axe_violations(page, f"{name}@{label}"))

            page.goto(f"{base}/admin/login")
            page.fill("#email", owner)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Dashboard")
            page.goto(f"{base}/admin/imports")
            visit("imports")
            listing = tmp_path / f"list-{label}.csv"
            listing.write_text(LISTING.format(label=label), encoding="utf-8")
            page.set_input_files("#import-file", str(listing))
            page.select_option("#import-course", COURSE_SLUG)
            page.fill("#import-tag", f"fair-{label}")
            page.click("text=Upload and import")
            expect(page.locator(".notice[role=status]")).to_contain_text("4 rows: 1 accepted, 0 updated, 0 unchanged, 3 rejected")
            expect(page.locator("table")).to_contain_text("unknown time zone 'Mars/Base'")
            visit("import-done")
            with page.expect_download() as download:
                page.click("text=Download the report")
            with open(download.value.path(), newline="", encoding="utf-8") as report:
                rows = list(csv.DictReader(report))
            assert [(row["line"], row["outcome"]) for row in rows] == [("2", "accepted"), ("3", "rejected"), ("4", "rejected"), ("5", "rejected")]
            assert rows[3]["email"].startswith("'=")

            page.goto(f"{base}/admin/suppressions")
            page.evaluate(  # the subscriber page (another branch) holds this button; posted here as it would be
                "([url, token]) => { const f = document.createElement('form'); f.method = 'post'; f.action = url;"
                " const i = document.createElement('input'); i.type = 'hidden'; i.name = 'csrf_token'; i.value = token;"
                " f.appendChild(i); document.body.appendChild(f); f.submit(); }",
                [f"/admin/subscribers/{reader}/erase", page.locator("input[name=csrf_token]").first.get_attribute("value") or ""],
            )
            expect(page.locator(".notice[role=status]")).to_contain_text("Erased")
            page.fill("#suppression-q", f"erin-{label}@example.org")
            page.click("button:has-text('Search')")
            expect(page.locator(".notice")).to_have_count(0)  # the search's own page
            expect(page.locator("table")).to_contain_text("erased")
            visit("suppressions")
            page.goto(f"{base}/admin/audit-log")
            expect(page.locator("table")).to_contain_text("subscriber.erase")
            visit("audit-log")
            context.close()
    assert problems == []
