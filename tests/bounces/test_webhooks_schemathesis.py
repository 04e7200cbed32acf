"""Property-based run of the provider webhooks against their own OpenAPI description, on SQLite
and PostgreSQL, every provider configured: whatever schemathesis sends (in-schema bodies, broken
ones, odd headers), the answer is documented (status, content type, body) and never a 5xx, and
nothing unsigned is stored."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.models import WebhookEvent
from course.settings import Settings
from course.web.app import create_app
from tests.bounces.test_webhooks import GENERIC_SECRET, MAILGUN_KEY, POSTMARK_SECRET, SENDGRID_PUBLIC, TOPIC


def test_every_webhook_route_has_no_server_errors_and_matches_its_schema(settings: Settings, sessions: sessionmaker[Session]) -> None:
    app = create_app(
        settings.model_copy(
            update={
                "webhook_ses_topic_arns": TOPIC, "webhook_postmark_secret": POSTMARK_SECRET, "webhook_sendgrid_public_key": SENDGRID_PUBLIC,
                "webhook_mailgun_signing_key": MAILGUN_KEY, "webhook_generic_secret": GENERIC_SECRET, "webhook_limit_per_minute": 100_000,
            }
        )
    )  # fmt: skip
    app.state.sns_certificates = lambda url: pytest.fail(f"a certificate was fetched for an unsigned message: {url}")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if op.path.startswith("/webhooks/")]
    assert {operation.path for operation in operations} == {f"/webhooks/{name}" for name in ("ses", "postmark", "sendgrid", "mailgun", "generic")}
    cases = st.one_of(*(each.as_strategy(mode) for each in operations for mode in schemathesis.GenerationMode))
    statuses: set[int] = set()

    @given(case=cases)
    @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        # In-schema bodies without the provider's signature are refused (401), by design.
        response = case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
        statuses.add(response.status_code)

    with TestClient(app):
        run()
    assert statuses <= {400, 401, 413, 415, 422}, statuses
    assert 401 in statuses
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
