"""Bulk jobs in the admin and the API, with the inline limit at 10 so 30 readers take the job path:
the form's post becomes a job whose page refreshes itself (a meta refresh) and shows
progress; the API answers 202 with the job's URL, the same request again is the same job, and the
job's progress is read at GET /api/admin/bulk-jobs/{id}; under the limit the API answers 200 with
the result. The worker's task function runs the job; each start is one audit entry."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.audience.enrollment import get_or_create_subscriber
from course.models import AdminRole, AuditEntry, BulkJob, SubscriberTag
from course.web.app import create_app
from tests.support.admin_fixtures import PASSWORD, csrf_of, make_admin, make_token, sign_in
from tests.support.browser import VIEWPORTS, axe_violations, chromium, new_context
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

READERS = 30


@pytest.fixture
def small_limit(web_stack: WebStack) -> Iterator[TestClient]:
    settings = web_stack.settings.model_copy(update={"bulk_inline_limit": 10, "bulk_batch_size": 7})
    web_stack.settings = settings
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as test_client:
        yield test_client


def _readers(stack: WebStack) -> None:
    with stack.sessions.begin() as session:
        for n in range(READERS):
            get_or_create_subscriber(session, f"bulk{n:02d}@example.net", now=stack.clock.now())
        get_or_create_subscriber(session, "other@example.org", now=stack.clock.now())


def _run_worker_task(stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> int:
    """The beat task's own function, on this stack's settings."""
    import worker.bulk_tasks as bulk_tasks

    monkeypatch.setattr(bulk_tasks, "get_settings", lambda: stack.settings)
    return bulk_tasks.run_bulk_jobs.run()


def test_a_large_bulk_action_becomes_a_job_with_a_self_refreshing_page(
    web_stack: WebStack, small_limit: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = small_limit
    _readers(web_stack)
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    assert "More than 10: it runs in the background" in client.get("/admin/subscribers?q=bulk").text
    token = csrf_of(client, "/admin/subscribers?q=bulk")
    form = {"csrf_token": token, "q": "bulk", "action": "tag-add", "value": "spring"}
    answer = client.post("/admin/subscribers/bulk", data=form, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/bulk-jobs/")
    job_page = answer.headers["location"]
    queued = client.get(job_page)
    assert queued.status_code == 200
    assert 'id="job-state" data-follow="2"' in queued.text and "stop updating" in queued.text
    assert "0 of 30 subscribers gone through" in queued.text
    again = client.post("/admin/subscribers/bulk", data=form, follow_redirects=False)
    assert again.headers["location"] == job_page  # the same request: the same job

    assert _run_worker_task(web_stack, monkeypatch) == 1
    done = client.get(job_page).text
    assert "data-follow" not in done and "30 of the 30 subscribers the filter matched were changed" in html.unescape(done)
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).where(SubscriberTag.tag == "spring")) == READERS
        assert session.scalar(select(func.count()).select_from(BulkJob)) == 1
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action.like("subscribers.bulk%"))).all()
        assert [(entry.action, entry.actor, entry.detail["matched"]) for entry in entries] == [("subscribers.bulk_job", "editor@example.org", READERS)]
    assert client.get("/admin/bulk-jobs/999").status_code == 404


def test_the_api_answers_202_with_the_job_and_200_under_the_limit(
    web_stack: WebStack, small_limit: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = small_limit
    _readers(web_stack)
    editor = {"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())}"}
    viewer = {"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())}"}
    body = {"action": "unsubscribe", "value": "list cleanup", "q": "bulk", "key": "cleanup-1"}
    started = client.post("/api/admin/subscribers/bulk", json=body, headers=editor)
    assert started.status_code == 202, started.text
    job = started.json()
    assert started.headers["location"] == job["url"] == f"/api/admin/bulk-jobs/{job['id']}"
    assert (job["state"], job["total"], job["done"], job["filter"]) == ("queued", READERS, 0, "q=bulk")
    repeated = client.post("/api/admin/subscribers/bulk", json={**body, "value": "typo"}, headers=editor)
    assert repeated.status_code == 202 and repeated.json()["id"] == job["id"]  # the client's key: the same job
    assert client.post("/api/admin/subscribers/bulk", json=body, headers=viewer).status_code == 403

    _run_worker_task(web_stack, monkeypatch)
    followed = client.get(job["url"], headers=viewer).json()
    assert (followed["state"], followed["done"], followed["changed"], followed["percent"]) == ("done", READERS, READERS, 100)
    assert client.get("/api/admin/bulk-jobs/999", headers=viewer).status_code == 404

    small = client.post("/api/admin/subscribers/bulk", json={"action": "tag-add", "value": "vip", "q": "other@"}, headers=editor)
    assert small.status_code == 200 and small.json() == {"action": "tag-add", "matched": 1, "changed": 1}
    refused = client.post("/api/admin/subscribers/bulk", json={"action": "enrol", "value": "nope", "q": "bulk"}, headers=editor)
    assert refused.status_code == 400 and "unknown course" in refused.json()["detail"]
    schema = client.get("/api/openapi.json").json()
    assert "/api/admin/subscribers/bulk" in schema["paths"] and "/api/admin/bulk-jobs/{job_id}" in schema["paths"]


@pytest.mark.browser
def test_the_job_page_in_chromium_axe_clean(admin_live_stack: WebStack, artefacts: Path) -> None:
    from course.audience.bulk_jobs import start_bulk_job
    from course.audience.directory import parse_filter

    from playwright.sync_api import expect

    _readers(admin_live_stack)
    with admin_live_stack.sessions.begin() as session:
        job = start_bulk_job(session, parse_filter({"q": "bulk"}), "tag-add", value="spring", actor="editor@example.org",
                             admin_id=None, now=admin_live_stack.clock.now()).job  # fmt: skip
        job.done, job.changed, job.state = 14, 14, "running"
        job_id = job.id
    make_admin(admin_live_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=admin_live_stack.clock.now())
    base = admin_live_stack.settings.base_url
    problems: list[str] = []
    with chromium() as browser:
        for label, viewport in VIEWPORTS.items():
            context = new_context(browser, label)
            page = context.new_page()
            page.goto(f"{base}/admin/bulk-jobs/{job_id}")
            if page.locator("#password").count():
                page.fill("#email", "viewer@example.org")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.goto(f"{base}/admin/bulk-jobs/{job_id}")
            page.wait_for_selector("h1:text('Bulk action')")
            assert "14 of 30 subscribers gone through" in page.inner_text("main")
            page.screenshot(path=artefacts / f"bulk-job-{label}.png", full_page=True)
            problems.extend(axe_violations(page, f"bulk-job@{label}"))
            # The page follows the job in place (admin.js), without reloading: a worker's next
            # batch shows up while the page stays where it is.
            page.evaluate("window.__same_page = true")
            with admin_live_stack.sessions.begin() as session:
                session.get(BulkJob, job_id).done = 20  # type: ignore[union-attr]
            expect(page.locator("main")).to_contain_text("20 of 30 subscribers gone through", timeout=10_000)
            assert page.evaluate("window.__same_page === true")
            with admin_live_stack.sessions.begin() as session:
                session.get(BulkJob, job_id).done = 14  # type: ignore[union-attr]
            page.click("a:text('stop updating')")
            page.wait_for_selector("a:text('Update this page as the job goes on')")
            problems.extend(axe_violations(page, f"bulk-job-stopped@{label}"))
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], f"bulk-job@{label}: too wide"
            context.close()
    assert problems == [], "\n".join(problems)
