"""The worker's set-based path for new addresses (course.audience.signup_requests, PostgreSQL): the
same outcomes as sign_up one at a time, for new, known and repeated addresses in one batch, under
the per-address limit and the site-wide cap, in a number of statements that does not grow with
the batch."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select

from course.clock import ManualClock
from course.db import get_engine
from course.models import Delivery, Enrollment, EnrollmentStatus, SignupRequest, Subscriber, SubscriberStatus
from course.web.app import create_app
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, START, WebStack, prepare, web_settings

pytestmark = pytest.mark.postgres


def make_stack(tmp_path: Path, url: str, clock: ManualClock, smtp: RecordingSMTPServer, **overrides: Any) -> WebStack:
    settings = web_settings(tmp_path, url, smtp_host=smtp.host, smtp_port=smtp.port, signup_limit_per_ip=100_000,
                            **overrides)
    return prepare(settings, clock, smtp)


@pytest.fixture
def stack(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> Iterator[WebStack]:
    prepared = make_stack(tmp_path, pg_web_database_url, web_clock, web_smtp, signup_limit_per_address=1)
    yield prepared
    get_engine(prepared.settings).dispose()


def queue(stack: WebStack, *emails: str) -> None:
    with TestClient(create_app(stack.settings), base_url="http://testserver") as client:
        for email in emails:
            body = {"course": COURSE_SLUG, "email": email, "timezone": "Europe/Berlin"}
            assert client.post("/api/subscriptions", json=body).status_code == 202


def confirmations(stack: WebStack) -> dict[str, str | None]:
    """Each queued signup's address -> the template of the mail it caused (None: no mail)."""
    with stack.sessions() as session:
        rows = session.execute(
            select(SignupRequest.email, Delivery.template)
            .outerjoin(Delivery, Delivery.id == SignupRequest.confirm_delivery_id)
            .order_by(SignupRequest.id)
        ).all()
    return {f"{index}:{email}": template for index, (email, template) in enumerate(rows)}


def test_new_known_and_repeated_addresses_in_one_batch(stack: WebStack) -> None:
    with stack.sessions.begin() as session:
        known = Subscriber(email="known@example.org", name="K", timezone="UTC", status=SubscriberStatus.ACTIVE,
                           created_at=START, confirmed_at=START)
        session.add(known)
        session.flush()
        session.add(Enrollment(subscriber_id=known.id, course_id=stack.course_id(), status=EnrollmentStatus.ACTIVE,
                               enrolled_at=START))
    queue(stack, "a@example.org", "known@example.org", "b@example.org", "twice@example.org", "twice@example.org",
          "victim+1@example.org", "victim+2@example.org", "c@example.org")
    assert stack.handle_signups() == {"confirmation_queued": 5, "already_enrolled_queued": 1, "address_limited": 2}
    assert confirmations(stack) == {
        "0:a@example.org": "confirm", "1:known@example.org": None, "2:b@example.org": "confirm",
        "3:twice@example.org": "confirm", "4:twice@example.org": None,
        "5:victim+1@example.org": "confirm", "6:victim+2@example.org": None, "7:c@example.org": "confirm",
    }
    with stack.sessions() as session:
        pending = session.execute(
            select(Subscriber.email, Subscriber.timezone, Subscriber.name, Enrollment.status)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .where(Subscriber.status == SubscriberStatus.PENDING)
            .order_by(Subscriber.email)
        ).all()
        # The already_enrolled mail is recorded on the known reader's enrollment, not on the signup.
        already = session.scalars(select(Delivery.template).where(Delivery.subscriber_id == known.id)).all()
    assert already == ["already_enrolled"]
    assert [row.email for row in pending] == [
        "a@example.org", "b@example.org", "c@example.org", "twice@example.org", "victim+1@example.org"]
    assert {(row.timezone, row.name, row.status) for row in pending} == {("Europe/Berlin", "", EnrollmentStatus.PENDING)}
    # Every confirmation goes out, to the right address.
    assert sorted(parseaddr(mail["To"])[1] for mail in stack.deliver()) == sorted(
        ["a@example.org", "b@example.org", "c@example.org", "twice@example.org", "victim+1@example.org",
         "known@example.org"])
    assert stack.handle_signups() == {}


def test_the_site_wide_cap_stops_the_batch_in_queue_order(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> None:
    stack = make_stack(tmp_path, pg_web_database_url, web_clock, web_smtp, confirmation_mails_per_hour=2)
    queue(stack, "one@example.org", "two@example.org", "three@example.org", "four@example.org")
    assert stack.handle_signups() == {"confirmation_queued": 2, "capped": 2}
    assert list(confirmations(stack).values()) == ["confirm", "confirm", None, None]
    get_engine(stack.settings).dispose()


def test_new_addresses_cost_the_same_statements_whatever_their_number(stack: WebStack) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine: Engine = get_engine(stack.settings)
    costs = []
    for size in (3, 30):
        queue(stack, *(f"n{size}-{index}@example.org" for index in range(size)))
        statements.clear()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert stack.handle_signups() == {"confirmation_queued": size}
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        costs.append(len(statements))
    assert costs[0] == costs[1], costs
