"""The admin JSON API: what a token sees, and a property-based run of every /api/admin operation
against its own OpenAPI description, authenticated with an owner's token: no 5xx, no answer that
breaks the schema, whatever schemathesis sends."""

from __future__ import annotations

from datetime import timedelta

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.campaigns.service import fan_out, schedule_campaign, tag_subscribers
from sqlalchemy import update

from course.accounts.credentials import token_hash
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
    cases = st.one_of(
        *[operation.as_strategy(mode) for operation in operations for mode in schemathesis.GenerationMode],
        plain_names.flatmap(lambda body: schema["/api/admin/tokens"]["POST"].as_strategy(body=body)),
    )
    statuses: set[int] = set()

    @given(case=cases)
    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        # The run may revoke any token id, its own included; it gets its own back before each call.
        with web_stack.sessions.begin() as session:
            session.execute(update(ApiToken).where(ApiToken.token_hash == token_hash(token)).values(revoked_at=None))
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 201:
            assert response.json()["token"].startswith("course_")
        statuses.add(response.status_code)

    run()
    assert max(statuses) < 500
    assert {200, 201, 404, 422} <= statuses, statuses
