"""A subscriber's language and where they came from, on SQLite and PostgreSQL (where the signup is
one statement and the worker's batch path inserts new addresses set-based): a signup through the
course page's form takes the course's language and `form`, one through the JSON API `api`; a known
address keeps its own. The admin list and API filter by language (`none`: not known), and the
subscriber's page and API show both."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from course.audience.enrollment import get_or_create_subscriber
from course.clock import ManualClock
from course.db import get_engine
from course.models import AdminRole, Course, Subscriber
from course.web.app import create_app
from tests.support.admin_fixtures import make_admin, make_token, sign_in
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, TEST_BASE_URL, WebStack, csrf_token_of, prepare, web_settings


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer) -> Iterator[WebStack]:
    url = f"sqlite:///{tmp_path / 't.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_web_database_url")
    prepared = prepare(web_settings(tmp_path, url, smtp_host=web_smtp.host, smtp_port=web_smtp.port), web_clock, web_smtp)
    yield prepared
    get_engine(prepared.settings).dispose()


def _by_address(stack: WebStack) -> dict[str, Subscriber]:
    with stack.sessions() as session:
        return {row.email: row for row in session.scalars(select(Subscriber))}


def test_signups_keep_the_course_language_and_their_source_and_the_admin_filters_by_language(stack: WebStack) -> None:
    with stack.sessions.begin() as session:
        session.execute(update(Course).where(Course.slug == COURSE_SLUG).values(language="de"))
        get_or_create_subscriber(session, "known@example.org", now=stack.clock.now(), language="fr", source="cli")
    with TestClient(create_app(stack.settings), base_url=TEST_BASE_URL) as client:
        page = f"/courses/{COURSE_SLUG}"
        for email in ("form@example.org", "known@example.org"):
            form = {"email": email, "name": "", "timezone": "Europe/Berlin", "csrf_token": csrf_token_of(client.get(page).text)}
            assert client.post(page, data=form).status_code == 200
        for email in ("api1@example.org", "api2@example.org"):
            assert client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": email}).status_code == 202
        stack.handle_signups()
        people = _by_address(stack)
        assert {email: (row.language, row.source) for email, row in people.items()} == {
            "form@example.org": ("de", "form"), "api1@example.org": ("de", "api"), "api2@example.org": ("de", "api"),
            "known@example.org": ("fr", "cli"),  # a known address keeps its own
        }  # fmt: skip
        with stack.sessions.begin() as session:
            get_or_create_subscriber(session, "nolang@example.org", now=stack.clock.now())

        viewer = {"Authorization": f"Bearer {make_token(stack.sessions, AdminRole.VIEWER, now=stack.clock.now())}"}
        german = client.get("/api/admin/subscribers", params={"language": "de"}, headers=viewer).json()["subscribers"]
        assert sorted(row["email"] for row in german) == ["api1@example.org", "api2@example.org", "form@example.org"]
        assert {row["language"] for row in german} == {"de"}
        unknown = client.get("/api/admin/subscribers", params={"language": "none"}, headers=viewer).json()["subscribers"]
        assert [row["email"] for row in unknown] == ["nolang@example.org"]
        refused = client.get("/api/admin/subscribers", params={"language": "xx"}, headers=viewer)
        assert refused.status_code == 400 and "language" in refused.json()["fields"]
        one = client.get(f"/api/admin/subscribers/{people['api1@example.org'].id}", headers=viewer).json()
        assert (one["language"], one["source"]) == ("de", "api")

        make_admin(stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=stack.clock.now())
        sign_in(client, "viewer@example.org")
        listing = client.get("/admin/subscribers?language=fr")
        assert "known@example.org" in listing.text and "form@example.org" not in listing.text
        assert '<option value="fr" selected>French</option>' in listing.text
        detail = html.unescape(client.get(f"/admin/subscribers/{people['form@example.org'].id}").text)
        assert "<dt>Language</dt><dd>German</dd>" in detail and "<dt>Came from</dt><dd>the signup form</dd>" in detail
