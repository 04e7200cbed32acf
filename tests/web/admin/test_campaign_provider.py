"""A campaign's mail provider in the admin API and the campaign form: a configured name is stored and
given back, another is refused with the field named; the form offers the configured providers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from course.models import AdminRole
from course.settings import ProviderSettings
from course.web.app import create_app
from tests.support.admin_fixtures import make_admin, make_token, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403


def test_the_api_and_the_form_take_a_configured_provider_only(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"providers": {"ses": ProviderSettings(host="email-smtp.eu-west-1.amazonaws.com")}})
    token = make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())
    body = {"name": "Via SES", "subject": "Hello", "sender": "newsletter@example.org", "body_markdown": "Hi", "provider": "ses"}
    with TestClient(create_app(settings), base_url=TEST_BASE_URL) as client:
        api = TestClient(client.app, base_url=TEST_BASE_URL, headers={"Authorization": f"Bearer {token}"})
        created = api.post("/api/admin/campaigns", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["provider"] == "ses" and created.json()["paused_reason"] is None
        refused = api.post("/api/admin/campaigns", json={**body, "provider": "nowhere"})
        assert refused.status_code == 400 and set(refused.json()["fields"]) == {"provider"}
        unset = api.post("/api/admin/campaigns", json={k: v for k, v in body.items() if k != "provider"})
        assert unset.status_code == 201 and unset.json()["provider"] is None

        make_admin(web_stack.sessions, "editor@example.org", AdminRole.EDITOR, now=web_stack.clock.now())
        sign_in(client, "editor@example.org")
        form = client.get(f"/admin/campaigns/{created.json()['id']}/edit")
        assert form.status_code == 200
        assert '<select id="provider" name="provider"' in form.text and '<option value="ses" selected>ses</option>' in form.text
