"""Property-based run of every JSON API route against its own OpenAPI description, on SQLite and on
PostgreSQL, with and without the proof of work: whatever schemathesis generates (valid bodies and
deliberately invalid ones), the app answers without a 5xx and as documented (status codes, content
types, response bodies), and the worker handles whatever was queued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.clock import ManualClock
from course.db import get_engine
from course.web.app import create_app
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, WebStack, prepare, web_settings


@pytest.fixture(params=["sqlite", "postgres"])
def api_stack(request: pytest.FixtureRequest, tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer) -> Iterator[WebStack]:
    """The signup API over SQLite and over PostgreSQL (which refuses a NUL in text: a 500 there
    before control characters were refused at the door)."""
    url = f"sqlite:///{tmp_path / 't.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_web_database_url")
    settings = web_settings(tmp_path, url, smtp_host=web_smtp.host, smtp_port=web_smtp.port)
    stack = prepare(settings, web_clock, web_smtp)
    yield stack
    get_engine(settings).dispose()


@pytest.mark.parametrize("proof_of_work", [0, 500], ids=["plain", "proof-of-work"])
def test_every_api_route_has_no_server_errors_and_matches_its_schema(api_stack: WebStack, proof_of_work: int) -> None:
    # schemathesis.pytest.from_fixture does not run under pytest 9 (it reads Function._nodeid),
    # so the operations' strategies drive Hypothesis directly.
    app = create_app(  # limits high enough that the run exercises signups, not only the 429 path
        api_stack.settings.model_copy(
            update={"signup_limit_per_ip": 10_000, "signup_limit_per_address": 10_000, "signup_proof_of_work": proof_of_work}
        )
    )
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    # The admin API (/api/admin/…) needs a token and has its own run: tests/web/admin/test_admin_api.py;
    # the provider webhooks (/webhooks/…) theirs: tests/bounces/test_webhooks_schemathesis.py.
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if not op.path.startswith(("/api/admin/", "/webhooks/"))]
    assert {(operation.method.upper(), operation.path) for operation in operations} == {
        ("POST", "/api/subscriptions"),
        ("GET", "/api/proof-of-work"),
    }, "a new route: add what it may answer below"
    operation = schema["/api/subscriptions"]["POST"]
    # Generated slugs almost never name a real course; these bodies do, so the signup itself
    # (validation, the database, the queue) meets the odd emails, names and zones.
    real_course_bodies = st.fixed_dictionaries(
        {"course": st.just(COURSE_SLUG), "email": st.one_of(st.emails(), st.text(max_size=80))},
        optional={"name": st.text(max_size=300), "timezone": st.one_of(st.sampled_from(["Europe/Berlin", "UTC"]), st.text(max_size=64))},
    )
    cases = st.one_of(
        *(each.as_strategy(mode) for each in operations for mode in schemathesis.GenerationMode),
        real_course_bodies.flatmap(lambda body: operation.as_strategy(body=body)),
    )
    statuses: set[int] = set()

    @given(case=cases)
    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        # Every check but positive_data_acceptance: an address can fit the schema's string and
        # still fail email-validator's rules (no dot in the domain, a reserved TLD), which JSON
        # Schema cannot express; that 422 is by design and documented.
        response = case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
        statuses.add(response.status_code)

    run()
    # The signups the run queued, handled as a worker would: odd input must not break that either.
    api_stack.handle_signups()
    assert statuses <= {200, 202, 400, 404, 413, 415, 422, 429}, statuses
    assert 500 not in statuses
    if proof_of_work:
        assert {200, 422} <= statuses, f"the run never got a challenge: {statuses}"
    else:
        assert {202, 404, 422} <= statuses, f"the run never reached a signup: {statuses}"
