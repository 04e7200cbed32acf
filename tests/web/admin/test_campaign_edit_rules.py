"""Issue #21: an edit replaces what it is given and only a draft is edited (defect 3), the list
names each campaign's real audience (defect 5), a scheduled campaign's page polls its progress
(defect 6), and every admin form POST answers with a redirect, a create form only creating once
(defect 7)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.campaigns.service import tag_subscribers
from course.models import AdminRole, Campaign, Subscriber
from tests.support.admin_fixtures import csrf_of, make_admin, make_token, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

BODY = {
    "name": "March", "subject": "News", "preheader": "", "sender": "newsletter@example.org", "body_markdown": "Hello",
    "audience": {"tags_any": ["readers"]},
}  # fmt: skip


def _readers(stack: WebStack, count: int = 3) -> None:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        for number in range(count):
            session.add(Subscriber(email=f"r{number}@example.org", name="", timezone="UTC", status="active", created_at=now))
        session.add(Subscriber(email="other@example.org", name="", timezone="UTC", status="active", created_at=now))
        session.flush()
        for number in range(count):
            tag_subscribers(session, f"r{number}@example.org", ["readers"])


def _editor_api(stack: WebStack, client: TestClient) -> TestClient:
    token = make_token(stack.sessions, AdminRole.EDITOR, now=stack.clock.now())
    return TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {token}"})


def test_a_put_without_the_audience_is_refused_and_a_scheduled_campaign_is_unscheduled_before_an_edit(
    web_stack: WebStack, client: TestClient
) -> None:
    _readers(web_stack)
    api = _editor_api(web_stack, client)
    campaign_id = api.post("/api/admin/campaigns", json=BODY).json()["id"]
    partial = api.put(f"/api/admin/campaigns/{campaign_id}", json={k: v for k, v in BODY.items() if k not in ("audience", "preheader")})
    assert partial.status_code == 400 and set(partial.json()["fields"]) == {"audience", "preheader"}
    day = (web_stack.clock.now() + timedelta(days=2)).date().isoformat()
    assert api.post(f"/api/admin/campaigns/{campaign_id}/schedule", json={"mode": "at", "day": day, "at": "09:00"}).status_code == 200
    # A scheduled campaign is not edited in place, whole or in part: 409, with what to do.
    refused = api.put(f"/api/admin/campaigns/{campaign_id}", json={**BODY, "audience": {}})
    assert refused.status_code == 409 and "unschedule" in refused.json()["detail"]
    campaign = api.get(f"/api/admin/campaigns/{campaign_id}").json()
    assert campaign["status"] == "scheduled" and campaign["audience"]["tags_any"] == ["readers"]
    # The same rule in the web admin.
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    page = client.post(
        f"/admin/campaigns/{campaign_id}/edit",
        data={**{k: v for k, v in BODY.items() if k != "audience"}, "csrf_token": csrf_of(client, "/admin/campaigns/new")},
    )
    assert page.status_code == 409 and "unschedule" in page.text.lower()
    # Unscheduled, it is a draft again and a full replacement is accepted.
    assert api.post(f"/api/admin/campaigns/{campaign_id}/unschedule").json()["status"] == "draft"
    replaced = api.put(f"/api/admin/campaigns/{campaign_id}", json={**BODY, "subject": "Newer"})
    assert replaced.status_code == 200 and replaced.json()["subject"] == "Newer" and replaced.json()["audience"]["tags_any"] == ["readers"]


def test_the_campaign_lists_name_each_campaigns_audience(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack)
    api = _editor_api(web_stack, client)
    for name, audience in (("By course", {"course": "sourdough-from-scratch"}), ("By tag", {"tags_any": ["readers"]}), ("All", {})):
        assert api.post("/api/admin/campaigns", json={**BODY, "name": name, "audience": audience}).status_code == 201
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    rows = {
        re.sub(r"<[^>]+>", "", row.split("</a>")[0]).strip(): row
        for row in re.findall(r'<td class="title">.*?</tr>', client.get("/admin/campaigns").text, re.S)
    }
    assert "enrolled in sourdough-from-scratch" in rows["By course"] and "everyone" not in rows["By course"]
    assert "tagged readers" in rows["By tag"] and "everyone" in rows["All"]
    from typer.testing import CliRunner

    from course.cli.main import app

    settings = web_stack.settings
    listed = CliRunner().invoke(
        app, ["campaign", "list"],
        env={"COURSE_DATABASE_URL": settings.database_url, "COURSE_VAR_DIR": str(settings.var_dir), "COLUMNS": "200"},
    )  # fmt: skip
    assert listed.exit_code == 0, listed.output
    lines = {line.split("│")[2].strip(): line for line in listed.output.splitlines() if line.count("│") > 3}
    assert "enrolled in sourdough-from-scratch" in lines["By course"] and "(all)" not in lines["By course"]
    assert "tagged readers" in lines["By tag"]


def test_the_api_description_says_a_put_needs_every_field_and_refused_input_is_400(client: TestClient) -> None:
    described = client.get("/api/openapi.json").json()
    put = described["paths"]["/api/admin/campaigns/{campaign_id}"]["put"]
    body_schema = put["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(described["components"]["schemas"][body_schema]["required"]) == set(BODY)
    assert "/api/admin/campaigns/{campaign_id}/unschedule" in described["paths"]
    admin_operations = [op for path, ops in described["paths"].items() if path.startswith("/api/admin/") for op in ops.values()]
    assert all("422" not in op["responses"] and "400" in op["responses"] for op in admin_operations)


def test_save_and_count_redirects_and_a_resubmitted_create_form_makes_no_second_draft(
    web_stack: WebStack, client: TestClient
) -> None:
    _readers(web_stack)
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    form_page = client.get("/admin/campaigns/new").text
    key = re.search(r'name="create_key" value="([^"]+)"', form_page)
    assert key, "the create form carries an idempotency key"
    form = {
        "name": "March", "subject": "News", "preheader": "", "sender": "newsletter@example.org", "body_markdown": "Hello",
        "tags_any": "readers", "action": "count", "create_key": key.group(1), "csrf_token": csrf_of(client, "/admin/campaigns/new"),
    }  # fmt: skip
    first = client.post("/admin/campaigns/new", data=form, follow_redirects=False)
    assert first.status_code == 303  # post/redirect/get: a reload repeats the GET, not the POST
    counted = client.get(first.headers["location"])
    assert counted.status_code == 200 and "<strong>3</strong> subscribers would get this campaign now" in counted.text
    again = client.post("/admin/campaigns/new", data=form, follow_redirects=False)  # the browser's "resend"
    assert again.status_code == 303 and again.headers["location"].split("?")[0] == first.headers["location"].split("?")[0]
    assert "already made" in client.get(again.headers["location"]).text
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 1
    # Another form (another key) is another draft.
    other = {**form, "create_key": re.search(r'name="create_key" value="([^"]+)"', client.get("/admin/campaigns/new").text).group(1)}  # type: ignore[union-attr]
    assert client.post("/admin/campaigns/new", data=other, follow_redirects=False).status_code == 303
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 2


def test_every_successful_campaign_form_post_answers_with_a_redirect(web_stack: WebStack, client: TestClient) -> None:
    _readers(web_stack)
    make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
    sign_in(client, "editor@example.org")
    api = _editor_api(web_stack, client)
    campaign_id = api.post("/api/admin/campaigns", json=BODY).json()["id"]
    token = csrf_of(client, "/admin/campaigns/new")
    fields = {k: v for k, v in BODY.items() if k != "audience"} | {"tags_any": "readers", "csrf_token": token}
    posts = [
        (f"/admin/campaigns/{campaign_id}/edit", {**fields, "action": "save"}),
        (f"/admin/campaigns/{campaign_id}/edit", {**fields, "action": "count"}),
        (f"/admin/campaigns/{campaign_id}/test", {"test_address": "me@example.net", "preview_as": "", "csrf_token": token}),
        (f"/admin/campaigns/{campaign_id}/schedule", {"mode": "now", "csrf_token": token}),
        (f"/admin/campaigns/{campaign_id}/pause", {"csrf_token": token}),
        (f"/admin/campaigns/{campaign_id}/resume", {"csrf_token": token}),
        (f"/admin/campaigns/{campaign_id}/unschedule", {"csrf_token": token}),
        (f"/admin/campaigns/{campaign_id}/duplicate", {"csrf_token": token}),
    ]
    for path, data in posts:
        answer = client.post(path, data=data, follow_redirects=False)
        assert answer.status_code == 303, (path, data.get("action"), answer.status_code)
    copy_id = re.search(r"/admin/campaigns/(\d+)/edit", answer.headers["location"]).group(1)  # type: ignore[union-attr]
    assert client.post(f"/admin/campaigns/{copy_id}/delete", data={"csrf_token": token}, follow_redirects=False).status_code == 303
