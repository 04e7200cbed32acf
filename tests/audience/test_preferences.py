"""The preferences page's read model: each enrollment with its course and progress, in one SELECT
however many courses the subscriber takes (it was three queries per enrollment)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import event, update
from sqlalchemy.orm import Session, sessionmaker

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.audience.preferences import enrollment_views
from course.clock import ManualClock
from course.models import Delivery, DeliveryState, Lesson, Subscriber
from tests.support.pipeline_fixtures import make_course, rows_of

TOKYO = ZoneInfo("Asia/Tokyo")


@contextmanager
def counted_statements(session: Session) -> Iterator[list[str]]:
    """Every statement the session's engine sends while the block runs (a real cursor event)."""
    engine = session.get_bind().engine
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _subscriber_in(session: Session, now, slugs: list[str]) -> Subscriber:  # type: ignore[no-untyped-def]
    subscriber = get_or_create_subscriber(session, "ann@example.org", name="Ann", timezone_name="Asia/Tokyo", now=now)
    for number, slug in enumerate(slugs):
        course = make_course(session, now=now, slug=slug, lessons=3 + number)
        enroll(session, subscriber, course, now=now + timedelta(minutes=number))
    return subscriber


def test_three_enrollments_cost_one_statement_like_one_does(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with db.begin() as session:
        alone = get_or_create_subscriber(session, "bob@example.org", name="Bob", timezone_name="UTC", now=now)
        enroll(session, alone, make_course(session, now=now, slug="solo"), now=now)
        subscriber = _subscriber_in(session, now, ["bread", "cheese", "beer"])
        session.expire_all()  # nothing cached: every read below has to reach the database
        alone, subscriber = session.get(Subscriber, alone.id), session.get(Subscriber, subscriber.id)
        assert alone is not None and subscriber is not None
        with counted_statements(session) as one_course:
            assert len(enrollment_views(session, alone)) == 1
        with counted_statements(session) as three_courses:
            assert len(enrollment_views(session, subscriber)) == 3
    assert len(one_course) == 1, one_course
    assert len(three_courses) == 1, three_courses


def test_each_view_holds_its_course_progress_and_next_lesson_in_local_time(
    db: sessionmaker[Session], clock: ManualClock
) -> None:
    now = clock.now()
    with db.begin() as session:
        subscriber = _subscriber_in(session, now, ["bread", "cheese", "beer"])
        bread, cheese, beer = sorted(subscriber.enrollments, key=lambda e: e.enrolled_at)
        # Bread: lessons 1 and 2 sent, one lesson retired since; cheese: nothing left to send.
        first, second, third = rows_of(session, bread)
        session.execute(update(Delivery).where(Delivery.id.in_([first.id, second.id])).values(state=DeliveryState.SENT))
        session.execute(update(Lesson).where(Lesson.id == third.lesson_id).values(retired_at=now))
        session.execute(
            update(Delivery).where(Delivery.enrollment_id == cheese.id).values(state=DeliveryState.CANCELLED)
        )
        expected_due = min(row.due_at for row in rows_of(session, beer))
        views = enrollment_views(session, subscriber, first_course_id=beer.course_id)
    assert [view.course_slug for view in views] == ["beer", "bread", "cheese"]  # the linked course first
    by_slug = {view.course_slug: view for view in views}
    assert (by_slug["bread"].lessons_sent, by_slug["bread"].lesson_count) == (2, 2)
    assert by_slug["bread"].next_due_local is not None  # lesson 3's row is still pending
    assert (by_slug["cheese"].lessons_sent, by_slug["cheese"].lesson_count, by_slug["cheese"].next_due_local) == (0, 4, None)
    assert (by_slug["beer"].lessons_sent, by_slug["beer"].lesson_count) == (0, 5)
    assert by_slug["beer"].next_due_local == expected_due.astimezone(TOKYO).strftime("%a %-d %b, %H:%M")
    assert by_slug["beer"].course_title == "Course beer" and by_slug["beer"].status == "active"
    assert by_slug["beer"].send_time == "09:00" and by_slug["beer"].own_send_time is False
