"""The admin JSON API: what a token sees, and a property-based run of every /api/admin operation
against its own OpenAPI description, authenticated with an owner's token: no 5xx, no answer that
breaks the schema, whatever schemathesis sends."""

from __future__ import annotations

import json
from datetime import timedelta

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.campaigns.service import fan_out, schedule_campaign, tag_subscribers
from sqlalchemy import update

from course.accounts.credentials import token_hash
from course.campaigns.service import MAX_BODY_CHARS
from course.models import AdminRole, ApiToken, Subscriber
from course.web.app import create_app
from tests.support.admin_fixtures import make_token
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def _seed(stack: WebStack) -> int:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        for number in range(5):
            session.add(Subscriber(email=f"r{number}@example.org", name="", timezone="UTC", status="active", created_at=now))
        session.flush()
        for number in range(5):
            tag_subscribers(session, f"r{number}@example.org", ["readers"])
        campaign = schedule_campaign(
            session, name="Digest", subject="News", body_markdown="Hello", segment_tag="readers",
            sender_name="Bakery", sender_email="news@example.org", send_at=now + timedelta(minutes=5), now=now,
        )  # fmt: skip
        fan_out(session, campaign.id, now=now)
        return campaign.id


def test_a_token_reads_campaigns_progress_and_tags(web_stack: WebStack, client: TestClient) -> None:
    campaign_id = _seed(web_stack)
    api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.VIEWER, now=web_stack.clock.now())}"})
    (listed,) = api.get("/api/admin/campaigns").json()
    assert listed["id"] == campaign_id and listed["status"] == "sending" and listed["progress"]["remaining"] == 5
    assert api.get(f"/api/admin/campaigns/{campaign_id}").json()["body_markdown"] == "Hello"
    assert api.get(f"/api/admin/campaigns/{campaign_id}/progress").json()["total"] == 5
    assert api.get("/api/admin/campaigns/999").status_code == 404
    assert api.get("/api/admin/tags").json() == [{"tag": "readers", "active_subscribers": 5}]
    preview = api.get(f"/api/admin/campaigns/{campaign_id}/preview", params={"subscriber": "r3@example.org"}).json()
    assert preview["shown_as"] == "r3@example.org" and preview["note"] == "" and preview["subject"] == "News"
    assert preview["sender"] == "Bakery <news@example.org>" and "Hello" in preview["html"] and "Hello" in preview["text"]
    assert "/u/" not in preview["text"] + preview["html"] and "/preferences/" not in preview["text"] + preview["html"]
    assert "/test-mail/unsubscribe" in preview["text"]  # links that act on nobody: a viewer token must not get r3's
    stand_in = api.get(f"/api/admin/campaigns/{campaign_id}/preview", params={"subscriber": "nobody@example.org"}).json()
    assert stand_in["shown_as"] == "r0@example.org" and "nobody@example.org" in stand_in["note"]
    assert api.get("/api/admin/campaigns/999/preview").status_code == 404


def test_admin_api_has_no_server_errors_and_matches_its_schema(web_stack: WebStack) -> None:
    _seed(web_stack)
    token = make_token(web_stack.sessions, AdminRole.OWNER, now=web_stack.clock.now())
    app = create_app(web_stack.settings)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations() if result.ok().path.startswith("/api/admin/")]
    assert len(operations) >= 8
    # Generated names are mostly control characters and blanks, which the rules refuse (400); these
    # bodies make the run create tokens too.
    plain_names = st.fixed_dictionaries(
        {"name": st.text(alphabet="abcdefghijklmnopqrstuvwxyz -", min_size=1, max_size=40).filter(str.strip), "role": st.sampled_from(["owner", "editor", "viewer"])}
    )
    # Campaign bodies that pass the rules, so the run also creates, edits, schedules, pauses and
    # cancels campaigns (generated senders are never on the configured list).
    words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=30).filter(str.strip)
    campaigns = st.fixed_dictionaries(
        {"name": words, "subject": words, "sender": st.just("newsletter@example.org"), "body_markdown": words,
         "audience": st.fixed_dictionaries({}, optional={"tags_any": st.just(["readers"]), "exclude_tags": st.just(["lapsed"])})},
        optional={"preheader": words},
    )  # fmt: skip
    schedules = st.fixed_dictionaries(
        {"mode": st.sampled_from(["now", "at", "local"]), "day": st.sampled_from(["2026-03-02", "2026-03-09", "2026-02-01", "someday"]),
         "at": st.sampled_from(["09:00", "23:59", "25:00"]), "zone": st.sampled_from(["UTC", "Europe/Berlin", "Nowhere/Else"])}
    )  # fmt: skip
    cases = st.one_of(
        *[operation.as_strategy(mode) for operation in operations for mode in schemathesis.GenerationMode],
        plain_names.flatmap(lambda body: schema["/api/admin/tokens"]["POST"].as_strategy(body=body)),
        campaigns.flatmap(lambda body: schema["/api/admin/campaigns"]["POST"].as_strategy(body=body)),
        campaigns.flatmap(lambda body: schema["/api/admin/campaigns/{campaign_id}"]["PUT"].as_strategy(body=body, path_parameters={"campaign_id": 1})),
        schedules.flatmap(lambda body: schema["/api/admin/campaigns/{campaign_id}/schedule"]["POST"].as_strategy(body=body)),
    )
    statuses: set[int] = set()

    @given(case=cases)
    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        # The run may revoke any token id, its own included; it gets its own back before each call.
        with web_stack.sessions.begin() as session:
            session.execute(update(ApiToken).where(ApiToken.token_hash == token_hash(token)).values(revoked_at=None))
        # Every check but positive_data_acceptance: a schema-valid body can still break a rule JSON
        # Schema cannot state (a date that does not exist, a time already past, an audience that
        # reaches nobody, a sender not on the list); that 400 is documented, with its fields.
        excluded = [schemathesis.checks.positive_data_acceptance]
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            # The owner's token replaces the generated Authorization below, so a case whose
            # negation was in its headers (a token left out) is not sent as generated: a 200 to it
            # says nothing about the API accepting bad data.
            excluded.append(schemathesis.checks.negative_data_rejection)
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded)
        if response.status_code == 201 and case.operation.path == "/api/admin/tokens":
            assert response.json()["token"].startswith("course_")
        statuses.add(response.status_code)

    run()
    assert max(statuses) < 500
    assert {200, 201, 400, 404, 409} <= statuses and 422 not in statuses, statuses  # refused input: 400


def test_every_admin_operation_documents_the_refusals_any_request_may_get(client: TestClient) -> None:
    """The middleware's answers (a control character: 400; a body over the limit: 413) are in the
    description of every admin operation, so a client generated from it knows them."""
    paths = client.get("/api/openapi.json").json()["paths"]
    operations = [(path, method, operation) for path, item in paths.items() if path.startswith("/api/admin/") for method, operation in item.items()]
    assert len(operations) >= 15
    undocumented = [f"{method} {path}" for path, method, operation in operations if not {"400", "401", "403", "413"} <= set(operation["responses"])]
    assert undocumented == []


def test_a_long_non_ascii_campaign_fits_the_admin_body_limit(web_stack: WebStack, client: TestClient) -> None:
    """A body at the editor's limit, in a script JSON escapes to six bytes a character (300 KB on the
    wire), is accepted; one over it is refused by the schema (400, with the field), and 2 MB by the body limit (413)."""
    _seed(web_stack)
    api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())}"})
    body = {"name": "Long", "subject": "Long", "sender": "newsletter@example.org", "body_markdown": "ж" * MAX_BODY_CHARS}
    created = api.post("/api/admin/campaigns", content=json.dumps(body, ensure_ascii=True), headers={"Content-Type": "application/json"})
    assert created.status_code == 201 and len(created.json()["body_markdown"]) == MAX_BODY_CHARS
    longer = api.post("/api/admin/campaigns", json={**body, "body_markdown": "ж" * (MAX_BODY_CHARS + 1)})
    assert longer.status_code == 400 and set(longer.json()["fields"]) == {"body_markdown"}
    huge = api.post("/api/admin/campaigns", json={**body, "body_markdown": "x" * (2 * 1024 * 1024)})
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]


def test_an_editor_token_composes_counts_schedules_pauses_and_cancels(web_stack: WebStack, client: TestClient) -> None:
    _seed(web_stack)
    now = web_stack.clock.now()
    editor_api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.EDITOR, now=now)}"})
    viewer_api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.VIEWER, now=now)}"})
    body = {"name": "API letter", "subject": "Hello", "preheader": "", "sender": "newsletter@example.org", "body_markdown": "Hi", "audience": {"tags_any": ["readers"]}}
    assert viewer_api.post("/api/admin/campaigns", json=body).status_code == 403
    bad = editor_api.post("/api/admin/campaigns", json={**body, "subject": "a\r\nBcc: x@example.org", "body_markdown": "<script>x</script>"})
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"subject", "body_markdown"}
    unknown = editor_api.post("/api/admin/campaigns", json={**body, "audience": {"tags_any": ["ghosts"]}})
    assert unknown.status_code == 400 and "ghosts" in unknown.json()["detail"]
    created = editor_api.post("/api/admin/campaigns", json=body)
    assert created.status_code == 201
    campaign = created.json()
    assert campaign["status"] == "draft" and campaign["audience"]["tags_any"] == ["readers"]
    assert viewer_api.post("/api/admin/audience/count", json={"tags_any": ["readers"]}).json() == {"count": 5}
    past = editor_api.post(f"/api/admin/campaigns/{campaign['id']}/schedule", json={"mode": "at", "day": "2026-01-01", "at": "09:00", "zone": "UTC"})
    assert past.status_code == 400 and "has passed" in past.json()["detail"]
    scheduled = editor_api.post(f"/api/admin/campaigns/{campaign['id']}/schedule", json={"mode": "now"})
    assert scheduled.status_code == 200 and scheduled.json()["recipients"] == 5
    assert editor_api.post(f"/api/admin/campaigns/{campaign['id']}/pause").json()["status"] == "paused"
    assert editor_api.post(f"/api/admin/campaigns/{campaign['id']}/resume").json()["status"] == "scheduled"
    with web_stack.sessions.begin() as session:
        fan_out(session, campaign["id"], now=now)
    assert editor_api.put(f"/api/admin/campaigns/{campaign['id']}", json=body).status_code == 409
    test = editor_api.post(f"/api/admin/campaigns/{campaign['id']}/test", json={"address": "me@example.net"})
    assert test.status_code == 202 and test.json() == {"address": "me@example.net", "shown_as": "r0@example.org"}
    assert editor_api.post(f"/api/admin/campaigns/{campaign['id']}/test", json={"address": "nope"}).status_code == 400
    cancelled = editor_api.post(f"/api/admin/campaigns/{campaign['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["cancelled"] == 5
    copy = editor_api.post(f"/api/admin/campaigns/{campaign['id']}/duplicate")
    assert copy.status_code == 201 and copy.json()["status"] == "draft" and copy.json()["name"] == "Copy of API letter"
    assert editor_api.delete(f"/api/admin/campaigns/{campaign['id']}").status_code == 409  # it was sent (cancelled)
    assert viewer_api.delete(f"/api/admin/campaigns/{copy.json()['id']}").status_code == 403
    assert editor_api.delete(f"/api/admin/campaigns/{copy.json()['id']}").status_code == 204
    assert editor_api.get(f"/api/admin/campaigns/{copy.json()['id']}").status_code == 404
    assert editor_api.post("/api/admin/campaigns/9999/pause").status_code == 404


def test_final_statistics_count_who_unsubscribed_within_a_week(web_stack: WebStack, client: TestClient) -> None:
    from course.models import Delivery, DeliveryState

    campaign_id = _seed(web_stack)
    now = web_stack.clock.now()
    with web_stack.sessions.begin() as session:
        session.execute(update(Delivery).where(Delivery.campaign_id == campaign_id).values(state=DeliveryState.SENT, sent_at=now))
        session.execute(update(Subscriber).where(Subscriber.email == "r0@example.org").values(status="unsubscribed", unsubscribed_at=now + timedelta(days=2)))
        session.execute(update(Subscriber).where(Subscriber.email == "r1@example.org").values(status="unsubscribed", unsubscribed_at=now + timedelta(days=9)))
    api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {make_token(web_stack.sessions, AdminRole.VIEWER, now=now)}"})
    detail = api.get(f"/api/admin/campaigns/{campaign_id}").json()
    assert detail["progress"]["sent"] == 5 and detail["unsubscribed_within_7_days"] == 1
