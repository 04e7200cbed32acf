"""The subscriber web on PostgreSQL: migrations match the models, and signup -> confirm ->
unsubscribe works end to end (the rate-limit upsert and cascades are dialect-specific)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select

from course.db import get_engine
from course.models import Base, Delivery, DeliveryState, Enrollment, EnrollmentStatus, RateLimitHit, Subscriber
from course.web.app import create_app
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, link_in

pytestmark = pytest.mark.postgres


def test_migrations_match_the_models(pg_web_stack: WebStack) -> None:
    with get_engine(pg_web_stack.settings).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_signup_confirm_unsubscribe_on_postgres(pg_web_stack: WebStack) -> None:
    with TestClient(create_app(pg_web_stack.settings), base_url="http://testserver") as client:
        course_url = f"/courses/{COURSE_SLUG}"
        token = csrf_token_of(client.get(course_url).text)
        for _ in range(2):  # the second signup of a pending address counts in the same window row
            response = client.post(
                course_url, data={"email": "pat@example.org", "name": "Pat", "timezone": "Europe/Paris", "csrf_token": token}
            )
            assert response.status_code == 200
        confirmation, _ = pg_web_stack.deliver()
        confirm_url = link_in(confirmation, "/confirm/")
        page = client.get(confirm_url)
        assert client.post(confirm_url, data={"csrf_token": csrf_token_of(page.text)}).status_code == 200

        (lesson,) = pg_web_stack.deliver()
        assert lesson["Subject"].startswith("Lesson 1")
        stranger = TestClient(client.app, base_url="http://testserver")
        response = stranger.post(
            link_in(lesson, "/u/"),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200

    with pg_web_stack.sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == "pat@example.org")).one()
        enrollment = session.scalars(select(Enrollment).where(Enrollment.subscriber_id == subscriber.id)).one()
        assert enrollment.status == EnrollmentStatus.UNSUBSCRIBED
        hits = {(row.scope, row.hits) for row in session.scalars(select(RateLimitHit))}
    assert ("signup-address", 2) in hits and ("signup-ip", 2) in hits
    pg_web_stack.clock.advance(timedelta(days=7))
    assert pg_web_stack.deliver() == []
    with pg_web_stack.sessions() as session:
        lesson_states = set(
            session.scalars(
                select(Delivery.state).where(Delivery.subscriber_id == subscriber.id, Delivery.lesson_id.is_not(None))
            )
        )
    assert lesson_states == {DeliveryState.SENT, DeliveryState.CANCELLED}
