"""CSV import and export through the admin and the admin API: the upload streamed to disk and run
after the answer, its page and per-row report, the size limit, CSRF, and the audit entries."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlalchemy import select

from course.models import AdminRole, AuditEntry, Subscriber, SubscriberStatus
from tests.support.admin_fixtures import csrf_of, make_admin, make_token, sign_in
from tests.support.web_fixtures import COURSE_SLUG, TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

LISTING = "email,name,colour\nann@example.org,Ann,red\nnot an address,Bob,\nann@example.org,,\n=1+2@x,,\n"


def _editor(stack: WebStack, client: TestClient) -> TestClient:
    make_admin(stack.sessions, "editor@example.org", AdminRole.EDITOR, now=stack.clock.now())
    assert sign_in(client, "editor@example.org") == "/admin/dashboard"
    return client


def test_upload_page_runs_the_import_and_offers_the_report(web_stack: WebStack, client: TestClient) -> None:
    browser = _editor(web_stack, client)
    form = {"csrf_token": csrf_of(browser, "/admin/imports"), "mode": "opt-in", "course": COURSE_SLUG, "tag": "fair"}
    refused = browser.post("/admin/imports", data={**form, "csrf_token": "forged"}, files={"file": ("list.csv", LISTING.encode())})
    assert refused.status_code == 403
    answer = browser.post("/admin/imports", data=form, files={"file": ("list.csv", LISTING.encode())}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = browser.get(answer.headers["location"])
    assert "4 rows: 1 accepted, 0 updated, 0 unchanged, 2 rejected, 1 duplicates merged, 0 suppressed." in page.text
    assert "invalid email address" in page.text and "<code>colour</code>" in page.text
    report = browser.get(answer.headers["location"] + "/report.csv")
    assert report.headers["content-disposition"] == 'attachment; filename="import-1-report.csv"'
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert [(row["line"], row["outcome"]) for row in rows] == [("2", "duplicate"), ("3", "rejected"), ("4", "accepted"), ("5", "rejected")]
    assert rows[3]["email"] == "'=1+2@x"
    assert list((web_stack.settings.var_dir / "imports").iterdir()) == []  # the upload is gone once imported
    with web_stack.sessions() as session:
        assert session.scalars(select(Subscriber.status)).all() == [SubscriberStatus.PENDING]
        entries = session.execute(select(AuditEntry.action, AuditEntry.actor, AuditEntry.ip)).all()
    assert [entry[0] for entry in entries] == ["sign-in", "import.start", "import.finish"]
    assert entries[1][1:] == ("editor@example.org", "testclient")


def test_a_bad_upload_says_why_and_imports_nothing(web_stack: WebStack, client: TestClient) -> None:
    browser = _editor(web_stack, client)
    token = csrf_of(browser, "/admin/imports")
    consentless = browser.post("/admin/imports", data={"csrf_token": token, "mode": "confirmed"}, files={"file": ("a.csv", b"email\na@example.org\n")})
    assert consentless.status_code == 400 and "Confirmed mode needs a consent statement" in consentless.text
    answer = browser.post(
        "/admin/imports", data={"csrf_token": token, "mode": "confirmed", "consent": "paper forms"},
        files={"file": ("a.csv", b"name\nAnn\n")}, follow_redirects=True,
    )  # fmt: skip
    assert "Nothing was imported: no email column" in answer.text
    with web_stack.sessions() as session:
        assert session.scalars(select(Subscriber)).all() == []


def test_api_import_export_and_size_limit(web_stack: WebStack, client: TestClient) -> None:
    token = make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())
    api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {token}"})
    queued = api.post(
        "/api/admin/subscribers/import", params={"mode": "confirmed", "consent": "bought at the fair", "tag": "fair"},
        content=LISTING.encode(), headers={"content-type": "text/csv"},
    )  # fmt: skip
    assert queued.status_code == 202, queued.text
    status = api.get(f"/api/admin/subscribers/imports/{queued.json()['id']}").json()
    assert status["status"] == "done" and status["counts"]["accepted"] == 1 and status["unknown_columns"] == ["colour"]
    assert "line,email,outcome,reason" in api.get(status["report_url"]).text
    exported = api.get("/api/admin/subscribers/export", params={"tag": "fair"})
    assert exported.status_code == 200 and exported.text.splitlines()[1].startswith("ann@example.org,Ann,UTC,active,fair,")
    assert api.get("/api/admin/subscribers/export", params={"status": "gone"}).status_code == 400
    assert api.post("/api/admin/subscribers/import", content=b"email\n", headers={"content-type": "text/csv"}).status_code == 400
    huge = api.post(
        "/api/admin/subscribers/import", params={"course": COURSE_SLUG}, content=b"x",
        headers={"content-type": "text/csv", "content-length": str(2 * 1024**3)},
    )  # fmt: skip
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
