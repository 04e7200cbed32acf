"""Erasure and access export by an owner (page and API), the suppression list page, and the audit
log: every admin action recorded with who, when, where and what; owners read and filter it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from course.audience.enrollment import get_or_create_subscriber
from course.models import AdminRole, AuditEntry, Subscriber, SubscriberStatus
from tests.support.admin_fixtures import csrf_of, make_admin, make_token, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _reader(stack: WebStack, address: str = "ann@example.org") -> int:
    with stack.sessions.begin() as session:
        return get_or_create_subscriber(session, address, name="Ann", now=stack.clock.now()).id


def test_owner_exports_and_erases_and_the_list_shows_it(web_stack: WebStack, client: TestClient) -> None:
    reader = _reader(web_stack)
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    assert sign_in(client, "owner@example.org") == "/admin/dashboard"
    data = client.get(f"/admin/subscribers/{reader}/export.json").json()
    assert data["profile"]["email"] == "ann@example.org"
    token = csrf_of(client, "/admin/suppressions")
    assert client.post(f"/admin/subscribers/{reader}/erase", data={"csrf_token": "forged"}).status_code == 403
    erased = client.post(f"/admin/subscribers/{reader}/erase", data={"csrf_token": token}, follow_redirects=True)
    assert "Erased: their address is now only a hash" in erased.text and "ann@example.org" not in erased.text
    found = client.get("/admin/suppressions", params={"q": "ANN@example.org"})
    assert "erased" in found.text and "Remove" in found.text
    assert "Not on the list" in client.get("/admin/suppressions", params={"q": "bob@example.org"}).text
    entry_id = found.text.split("/admin/suppressions/")[1].split("/")[0]
    assert client.post(f"/admin/suppressions/{entry_id}/remove", data={"csrf_token": token, "reason": " "}).status_code == 400
    removed = client.post(f"/admin/suppressions/{entry_id}/remove", data={"csrf_token": token, "reason": "asked to come back"}, follow_redirects=True)
    assert "Removed from the list." in removed.text
    with web_stack.sessions() as session:
        assert session.get(Subscriber, reader).status == SubscriberStatus.ERASED  # type: ignore[union-attr]
        log = session.execute(select(AuditEntry.action, AuditEntry.target, AuditEntry.detail)).all()
    assert [action for action, _, _ in log] == ["sign-in", "subscriber.access-export", "subscriber.erase", "suppression.remove"]
    assert log[3][2] == {"was": "erased", "reason": "asked to come back"}
    assert all("ann@example.org" not in str(entry) for entry in log)


def test_api_erase_export_and_audit_log(web_stack: WebStack, client: TestClient) -> None:
    reader = _reader(web_stack)
    now = web_stack.clock.now()
    owner = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.OWNER, now=now)}"})
    editor = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=now)}"})
    assert editor.delete(f"/api/admin/subscribers/{reader}").status_code == 403
    assert owner.get(f"/api/admin/subscribers/{reader}/export").json()["profile"]["name"] == "Ann"
    assert owner.delete(f"/api/admin/subscribers/{reader}").status_code == 204
    assert owner.delete(f"/api/admin/subscribers/{reader}").status_code == 204  # twice: nothing more
    assert owner.delete("/api/admin/subscribers/999999").status_code == 404
    # A change through another route is recorded by the middleware, with the token as "who".
    assert owner.post("/api/admin/tokens", json={"name": "ci", "role": "viewer"}).status_code == 201
    log = owner.get("/api/admin/audit-log").json()
    actions = [entry["action"] for entry in log["entries"]]
    assert actions[0] == "POST /api/admin/tokens" and actions.count("subscriber.erase") == 2
    assert log["entries"][0]["actor"].startswith("API token ") and log["entries"][0]["detail"] == {"status": 201}
    assert [entry["action"] for entry in owner.get("/api/admin/audit-log", params={"action": "subscriber."}).json()["entries"]] == [
        "subscriber.erase", "subscriber.erase", "subscriber.access-export",
    ]  # fmt: skip
    assert editor.get("/api/admin/audit-log").status_code == 403
    page = owner.get("/api/admin/audit-log", params={"limit": 1}).json()
    older = owner.get("/api/admin/audit-log", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert older["entries"][0]["id"] < page["entries"][0]["id"]


def test_failed_sign_in_is_recorded_and_owners_read_the_page(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    assert sign_in(client, "owner@example.org", "wrong password") == "401"
    assert sign_in(client, "owner@example.org") == "/admin/dashboard"
    page = client.get("/admin/audit-log", params={"action": "sign-in.failed"})
    assert page.status_code == 200 and "sign-in.failed" in page.text and "testclient" in page.text
    assert "<code>sign-in</code>" not in page.text
