"""Issue #22, item 1: one click on an unsubscribe link can only ever stop mail.

The one-click answer used to carry a freshly signed preferences link (time zone, send time, pause,
"next lesson now" in every course, and a way around the preference links' 90-day expiry for anyone
holding a forwarded mail), and `GET /u/…` showed the reader's address. Now both pages show no address
and link nowhere personal; the only thing the unsubscribed page offers is to resubscribe to exactly
what that click stopped, for a short while. On SQLite (the ORM path) and PostgreSQL (the one
statement the endpoint runs there)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from course.audience.enrollment import enroll, get_or_create_subscriber, pause, unsubscribe
from course.clock import ManualClock
from course.db import get_engine
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import Course, Delivery, DeliveryState, Enrollment, EnrollmentStatus, Lesson, Subscriber, SubscriberStatus
from course.web.app import create_app
from course.web.public.unsubscribe import RESUBSCRIBE_SECONDS, UndoError, read_undo, sign_undo
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, TEST_BASE_URL, WebStack, prepare, web_settings
from tests.support.web_fixtures import *  # noqa: F403

EMAIL = "kim@example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
_FORM = re.compile(r'<form[^>]*action="([^"]+)"')
_HREF = re.compile(r'href="([^"]+)"')


@pytest.fixture(params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> Iterator[WebStack]:
    url = f"sqlite:///{tmp_path / 't.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_web_database_url")
    settings = web_settings(tmp_path, url, smtp_host=web_smtp.host, smtp_port=web_smtp.port)
    stack = prepare(settings, web_clock, web_smtp)
    yield stack
    get_engine(settings).dispose()


def reader_in_four_courses(stack: WebStack) -> tuple[int, dict[str, int]]:
    """Kim: taking the sample course and rye (active), pizza paused, spelt left earlier.
    Returns her id and each course's enrollment id by name."""
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        sample = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        courses = {"sample": sample}
        for name in ("rye", "pizza", "spelt"):
            course = Course(
                slug=f"{name}-{uuid.uuid4().hex[:6]}", title=name.title(), sender_name="Bakery", sender_email="bakery@example.org",
                created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(course)
            session.flush()
            for lesson in sample.lessons:
                session.add(Lesson(course_id=course.id, position=lesson.position, title=lesson.title, body=lesson.body, words=lesson.words,
                                   reading_minutes=lesson.reading_minutes, content_hash=lesson.content_hash, updated_at=now))
            courses[name] = course
        session.flush()
        kim = get_or_create_subscriber(session, EMAIL, name="Kim", timezone_name="Europe/Berlin", now=now)
        enrollments = {name: enroll(session, kim, course, now=now) for name, course in courses.items()}
        pause(session, enrollments["pizza"], now=now)
        unsubscribe(session, kim, course_id=courses["spelt"].id, now=now)
        return kim.id, {name: enrollment.id for name, enrollment in enrollments.items()}


def state(stack: WebStack, subscriber_id: int, enrollment_ids: dict[str, int]) -> dict[str, str]:
    with stack.sessions() as session:
        statuses = {name: session.get(Enrollment, enrollment_id).status for name, enrollment_id in enrollment_ids.items()}  # type: ignore[union-attr]
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return {"subscriber": subscriber.status, **statuses}


def open_lessons(stack: WebStack, enrollment_id: int) -> int:
    with stack.sessions() as session:
        rows = session.scalars(select(Delivery.state).where(Delivery.enrollment_id == enrollment_id)).all()
        return sum(1 for row in rows if row in (DeliveryState.PENDING, DeliveryState.HELD))


def unsubscribe_path(stack: WebStack, subscriber_id: int, course_id: int | None) -> str:
    url = signer_from_settings(stack.settings).url(LinkPurpose.UNSUBSCRIBE, subscriber_id, course_id)
    return url.removeprefix(TEST_BASE_URL)


def assert_nothing_personal(html: str) -> None:
    assert EMAIL not in html and "kim" not in html.lower()
    assert "/preferences/" not in html
    personal = [href for href in _HREF.findall(html) if not href.startswith(("/static/", "#", "data:")) and href != "/"]
    assert personal == [], personal


def course_id_of(stack: WebStack, enrollment_id: int) -> int:
    with stack.sessions() as session:
        enrollment = session.get(Enrollment, enrollment_id)
        assert enrollment is not None
        return enrollment.course_id


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_one_click_stops_one_course_and_offers_back_only_that(stack: WebStack) -> None:
    kim, enrollments = reader_in_four_courses(stack)
    before = state(stack, kim, enrollments)
    path = unsubscribe_path(stack, kim, course_id_of(stack, enrollments["rye"]))
    app = create_app(stack.settings)
    with TestClient(app, base_url=TEST_BASE_URL) as reader, TestClient(app, base_url=TEST_BASE_URL) as provider:
        page = reader.get(path)
        assert page.status_code == 200 and _FORM.findall(page.text) == [path]
        assert_nothing_personal(page.text)

        # The mail provider's RFC 8058 post: no cookie, no CSRF field.
        done = provider.post(path, data=ONE_CLICK)
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert_nothing_personal(done.text)
        assert state(stack, kim, enrollments) == {**before, "rye": EnrollmentStatus.UNSUBSCRIBED}
        assert open_lessons(stack, enrollments["rye"]) == 0
        # What the page offers: one form, to resubscribe to what this click stopped.
        (action,) = _FORM.findall(done.text)
        assert action == f"{path}/resubscribe" and set(hidden_fields(done.text)) == {"undo", "csrf_token"}

        # A second click stopped nothing: nothing to take back, no form at all.
        again = reader.post(path, data=ONE_CLICK)
        assert _FORM.findall(again.text) == [] and "You are unsubscribed" in again.text
        assert_nothing_personal(again.text)

        back = provider.post(action, data=hidden_fields(done.text))
        assert back.status_code == 200 and "resubscribed" in back.text.lower()
        assert_nothing_personal(back.text)
        assert state(stack, kim, enrollments) == before  # rye again; pizza still paused, spelt still left
        assert open_lessons(stack, enrollments["rye"]) > 0
        assert open_lessons(stack, enrollments["spelt"]) == 0


def test_one_click_on_all_email_offers_back_exactly_what_was_running(stack: WebStack) -> None:
    kim, enrollments = reader_in_four_courses(stack)
    before = state(stack, kim, enrollments)
    path = unsubscribe_path(stack, kim, None)
    with TestClient(create_app(stack.settings), base_url=TEST_BASE_URL) as reader:
        assert_nothing_personal(reader.get(path).text)
        done = reader.post(path, data=ONE_CLICK)
        assert_nothing_personal(done.text)
        assert state(stack, kim, enrollments) == {
            "subscriber": SubscriberStatus.UNSUBSCRIBED, "sample": EnrollmentStatus.UNSUBSCRIBED, "rye": EnrollmentStatus.UNSUBSCRIBED,
            "pizza": EnrollmentStatus.UNSUBSCRIBED, "spelt": EnrollmentStatus.UNSUBSCRIBED,
        }  # fmt: skip
        (action,) = _FORM.findall(done.text)
        fields = hidden_fields(done.text)
        back = reader.post(action, data=fields)
        assert back.status_code == 200
        assert_nothing_personal(back.text)
        assert state(stack, kim, enrollments) == before  # pizza paused again, spelt still left
        assert open_lessons(stack, enrollments["sample"]) > 0 and open_lessons(stack, enrollments["spelt"]) == 0
        # Taking it back twice changes nothing more; nor does a tampered or borrowed undo.
        again = reader.post(action, data=fields)
        assert again.status_code == 200 and state(stack, kim, enrollments) == before
        tampered = reader.post(action, data={**fields, "undo": fields["undo"][:-2] + "xx"})
        assert tampered.status_code == 400
        other_course = unsubscribe_path(stack, kim, course_id_of(stack, enrollments["rye"]))
        borrowed = reader.post(f"{other_course}/resubscribe", data=fields)
        assert borrowed.status_code == 400
        no_cookie = TestClient(create_app(stack.settings), base_url=TEST_BASE_URL).post(action, data=fields)
        assert no_cookie.status_code == 403


def test_a_reader_who_unsubscribed_again_since_is_not_resubscribed_by_an_old_undo(stack: WebStack) -> None:
    kim, enrollments = reader_in_four_courses(stack)
    path = unsubscribe_path(stack, kim, None)
    with TestClient(create_app(stack.settings), base_url=TEST_BASE_URL) as reader:
        done = reader.post(path, data=ONE_CLICK)
        (action,) = _FORM.findall(done.text)
        fields = hidden_fields(done.text)
        assert reader.post(action, data=fields).status_code == 200
        stack.clock.advance(timedelta(minutes=1))
        reader.post(path, data=ONE_CLICK)  # the reader leaves again, on purpose
        reader.post(action, data=fields)  # the first undo, replayed
        assert state(stack, kim, enrollments)["subscriber"] == SubscriberStatus.UNSUBSCRIBED


def test_an_undo_lives_a_short_while_on_the_wall_clock() -> None:
    token = sign_undo("secret", [7, 0, [1, 2], [3], "2026-03-02T08:00:00+00:00"], now=1_000_000.0)
    assert read_undo("secret", token, now=1_000_000.0 + RESUBSCRIBE_SECONDS - 1)[0] == 7
    with pytest.raises(UndoError):
        read_undo("secret", token, now=1_000_000.0 + RESUBSCRIBE_SECONDS + 1)
    with pytest.raises(UndoError):
        read_undo("another secret", token, now=1_000_000.0)
    assert RESUBSCRIBE_SECONDS <= 3600
    assert datetime.fromisoformat("2026-03-02T08:00:00+00:00")  # the payload's moment is ISO 8601
