"""The course figures read what the unsubscribe paths keep (issue #26), on PostgreSQL and SQLite:
each path records the last lesson an enrollment was sent as it leaves, the funnel groups by it, the
bounced count comes from the bounced readers, and "next sends due" stops counting at its cap."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from course.audience.course_stats import course_funnel, next_sends
from course.audience.directory import unsubscribe_all
from course.audience.enrollment import get_or_create_subscriber, unsubscribe, unsubscribe_in_one
from course.audience.erasure import erase
from course.clock import ManualClock
from course.models import Delivery, DeliveryState, Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from tests.support.pipeline_fixtures import enroll_people, make_course, rows_of


def _sent(session: Session, address: str, lessons: int) -> None:
    """Mark the reader's first `lessons` lesson rows sent (as the ledger would have)."""
    enrollment = session.scalars(select(Enrollment).join(Subscriber).where(Subscriber.email == address)).one()
    for row in rows_of(session, enrollment)[:lessons]:
        row.state = DeliveryState.SENT


def test_every_unsubscribe_path_records_the_last_lesson_sent(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    addresses = [f"{name}@example.org" for name in ("ann", "bob", "cat", "dan", "eve", "fay", "gus")]
    with db.begin() as session:
        course = make_course(session, now=now, lessons=4)
        course_id = course.id
        enroll_people(session, course, addresses, now=now)
        for address, lessons in zip(addresses, (0, 1, 2, 3, 2, 1, 4), strict=True):
            _sent(session, address, lessons)
        session.flush()
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        unsubscribe(session, people["ann@example.org"], course_id=course_id, now=now)  # nothing sent yet
        unsubscribe(session, people["bob@example.org"], course_id=course_id, now=now)  # one course
        unsubscribe(session, people["cat@example.org"], course_id=None, now=now)  # everything
        unsubscribe_all(session, select(Subscriber.id).where(Subscriber.email == "dan@example.org"), actor="admin", now=now)
        erase(session, people["eve@example.org"], secret="s" * 32, now=now)
        # Gus finished: a later unsubscribe from everything leaves his enrollment completed.
        session.execute(update(Enrollment).where(Enrollment.subscriber_id == people["gus@example.org"].id).values(status=EnrollmentStatus.COMPLETED))
        unsubscribe(session, people["gus@example.org"], course_id=None, now=now)
        # Unsubscribing again changes nothing recorded (bob's later rows are cancelled, not sent).
        unsubscribe(session, people["bob@example.org"], course_id=None, now=now)
        fay_id = people["fay@example.org"].id
    if db.kw["bind"].dialect.name == "postgresql":
        with db.kw["bind"].execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
            unsubscribe_in_one(connection, fay_id, course_id=course_id, now=now)  # the one-click endpoint's
    else:
        with db.begin() as session:
            unsubscribe(session, session.get(Subscriber, fay_id), course_id=course_id, now=now)  # type: ignore[arg-type]
    with db.begin() as session:
        recorded = {
            email: (status, position)
            for email, status, position in session.execute(
                select(Subscriber.email, Enrollment.status, Enrollment.left_after_position).join(Enrollment)
            )
        }
        funnel = course_funnel(session, course_id)
    assert recorded["ann@example.org"] == (EnrollmentStatus.UNSUBSCRIBED, None)
    assert recorded["bob@example.org"] == (EnrollmentStatus.UNSUBSCRIBED, 1)
    assert recorded["cat@example.org"] == (EnrollmentStatus.UNSUBSCRIBED, 2)
    assert recorded["dan@example.org"] == (EnrollmentStatus.UNSUBSCRIBED, 3)
    assert recorded["fay@example.org"] == (EnrollmentStatus.UNSUBSCRIBED, 1)
    assert recorded["gus@example.org"] == (EnrollmentStatus.COMPLETED, None)
    assert sum(1 for status, _ in recorded.values() if status == EnrollmentStatus.UNSUBSCRIBED) == 6  # eve's erased one too
    assert funnel.unsubscribed_after == {0: 1, 1: 2, 2: 2, 3: 1}  # ann; bob, fay; cat, eve; dan
    assert funnel.unsubscribed == 6


def test_bounced_readers_count_only_this_courses(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with db.begin() as session:
        bread = make_course(session, now=now, slug="bread", lessons=2)
        cheese = make_course(session, now=now, slug="cheese", lessons=2)
        readers = enroll_people(session, bread, ["ann@example.org", "bob@example.org", "cat@example.org"], now=now)
        enroll_people(session, cheese, ["dan@example.org"], now=now)
        get_or_create_subscriber(session, "eve@example.org", now=now)  # in no course
        session.execute(
            update(Subscriber)
            .where(Subscriber.email.in_(["ann@example.org", "bob@example.org", "dan@example.org", "eve@example.org"]))
            .values(status=SubscriberStatus.BOUNCED)
        )
        assert readers
        assert course_funnel(session, bread.id).bounced == 2
        assert course_funnel(session, cheese.id).bounced == 1


@pytest.mark.parametrize("cap", [2, 3, 10])
def test_next_sends_stop_counting_at_the_cap(db: sessionmaker[Session], clock: ManualClock, cap: int) -> None:
    now = clock.now()
    with db.begin() as session:
        course = make_course(session, now=now, lessons=3)
        enroll_people(session, course, [f"r{n}@example.org" for n in range(3)], now=now)
        # One reader's first lesson went out, another's is leased (still queued).
        rows = session.scalars(select(Delivery).order_by(Delivery.due_at, Delivery.id)).all()
        firsts = [row for row in rows if row.due_at == min(r.due_at for r in rows)]
        firsts[0].state = DeliveryState.SENT
        firsts[1].state = DeliveryState.LEASED
        session.flush()
        due = next_sends(session, course.id, cap=cap)
        first_only = next_sends(session, course.id, limit=1, cap=cap)
    assert [send.position for send in due] == [1, 2, 3]
    assert due[0].first_due_at == firsts[1].due_at
    # Lesson 1: two queued (one pending, one leased); lessons 2 and 3: three each.
    assert [(send.readers, send.more) for send in due] == [(min(2, cap), 2 > cap), (min(3, cap), 3 > cap), (min(3, cap), 3 > cap)]
    assert [send.position for send in first_only] == [1]
    assert all(send.first_due_at <= later.first_due_at for send, later in zip(due, due[1:]))
