"""Enrollment keeps the ledger saying exactly what will be sent, on PostgreSQL and SQLite: one row
per lesson on the schedule's times, no duplicates, stops that stop only what they should, pause
and resume, and a returning subscriber never getting a lesson twice."""

from __future__ import annotations

import unicodedata
from collections import Counter
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.audience.enrollment import (
    MAX_NAME_LENGTH,
    SubscriptionError,
    clean_name,
    enroll,
    get_or_create_subscriber,
    normalize_email,
    pause,
    resume,
    unsubscribe,
    unsubscribe_in_one,
)
from course.models import Delivery, DeliveryState, Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from course.audience.schedule import lesson_due_times
from tests.support.pipeline_fixtures import make_course, rows_of, snapshot

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_ONLY = frozenset(range(5))


def test_enrolling_writes_one_row_per_lesson_on_the_schedule(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=5, weekdays=WEEKDAYS_ONLY)
        ann = get_or_create_subscriber(session, "ann@example.org", timezone_name="Europe/Berlin", now=clock.now())
        enrollment = enroll(session, ann, course, now=clock.now())
        rows = rows_of(session, enrollment)
        expected = lesson_due_times(clock.now(), 5, zone=BERLIN, send_time=time(9), days_between=1, weekdays=WEEKDAYS_ONLY)
    assert [row.due_at for row in rows] == expected
    assert rows[0].due_at == clock.now()
    # Thursday now, Friday, then Monday to Wednesday, all 09:00 in Berlin.
    assert [row.due_at.astimezone(BERLIN).date() for row in rows[1:]] == [
        date(2026, 3, 6), date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)
    ]  # fmt: skip
    assert {(row.state, row.attempts, row.kind) for row in rows} == {(DeliveryState.PENDING, 0, "lesson")}
    assert enrollment.status == EnrollmentStatus.ACTIVE


def test_enrolling_twice_changes_nothing(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now())
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        enroll(session, ann, course, now=clock.now())
    with db() as session:
        before = snapshot(session)
    clock.advance(timedelta(hours=5))
    with db.begin() as session:
        course = session.get(type(course), course.id)
        ann = get_or_create_subscriber(session, "ANN@example.org", now=clock.now())
        enroll(session, ann, course, now=clock.now())
    with db() as session:
        assert snapshot(session) == before


def test_the_same_address_in_another_case_is_the_same_subscriber(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        first = get_or_create_subscriber(session, "Ann@Example.com", now=clock.now())
        second = get_or_create_subscriber(session, "ann@example.com", now=clock.now())
        third = get_or_create_subscriber(session, "  ANN@EXAMPLE.COM ", now=clock.now())
        assert first.id == second.id == third.id
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
    # The database itself refuses a second row that differs only in case.
    with pytest.raises(IntegrityError), db.begin() as session:
        session.add(Subscriber(email="ANN@example.com", name="", timezone="UTC", status="active", created_at=clock.now()))
        session.flush()


def _unsubscribe_in_one_statement(
    db: sessionmaker[Session], subscriber_id: int, course_id: int | None, clock: ManualClock
) -> str | None:
    """unsubscribe_in_one as the one-click endpoint runs it: on an autocommit connection."""
    engine = db.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("one statement on PostgreSQL only (SQLite has no UPDATE in WITH)")
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        return unsubscribe_in_one(connection, subscriber_id, course_id=course_id, now=clock.now())[0]


@pytest.mark.parametrize("one_statement", [False, True], ids=["orm", "one-statement"])
def test_unsubscribing_from_one_course_leaves_the_other_running(
    db: sessionmaker[Session], clock: ManualClock, one_statement: bool
) -> None:
    with db.begin() as session:
        bread = make_course(session, now=clock.now(), slug="bread", lessons=3)
        cheese = make_course(session, now=clock.now(), slug="cheese", lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        ben = get_or_create_subscriber(session, "ben@example.org", now=clock.now())
        for person in (ann, ben):
            enroll(session, person, bread, now=clock.now())
        enroll(session, ann, cheese, now=clock.now())
        if not one_statement:
            assert unsubscribe(session, ann, course_id=bread.id, now=clock.now()) == 3
    if one_statement:
        assert _unsubscribe_in_one_statement(db, ann.id, bread.id, clock) == "ann@example.org"
        assert _unsubscribe_in_one_statement(db, 10**9, bread.id, clock) is None  # no such subscriber
    with db() as session:
        by_course = {
            (email, slug): (status, sorted(states))
            for email, slug, status, states in _enrollment_states(session)
        }
        ann_status = session.scalar(select(Subscriber.status).where(Subscriber.email == "ann@example.org"))
    assert by_course[("ann@example.org", "bread")] == (EnrollmentStatus.UNSUBSCRIBED, ["cancelled"] * 3)
    assert by_course[("ann@example.org", "cheese")] == (EnrollmentStatus.ACTIVE, ["pending"] * 2)
    assert by_course[("ben@example.org", "bread")] == (EnrollmentStatus.ACTIVE, ["pending"] * 3)
    assert ann_status == SubscriberStatus.ACTIVE


def _enrollment_states(session: Session) -> list[tuple[str, str, str, list[str]]]:
    from course.models import Course

    result = []
    for enrollment, email, slug in session.execute(
        select(Enrollment, Subscriber.email, Course.slug)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .join(Course, Course.id == Enrollment.course_id)
    ):
        states = list(session.scalars(select(Delivery.state).where(Delivery.enrollment_id == enrollment.id)))
        result.append((email, slug, enrollment.status, states))
    return result


@pytest.mark.parametrize("one_statement", [False, True], ids=["orm", "one-statement"])
def test_unsubscribing_from_everything_cancels_every_open_row(
    db: sessionmaker[Session], clock: ManualClock, one_statement: bool
) -> None:
    with db.begin() as session:
        bread = make_course(session, now=clock.now(), slug="bread", lessons=3)
        cheese = make_course(session, now=clock.now(), slug="cheese", lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        enroll(session, ann, bread, now=clock.now())
        enroll(session, ann, cheese, now=clock.now())
        first = rows_of(session, session.scalars(select(Enrollment).where(Enrollment.course_id == bread.id)).one())[0]
        first.state = DeliveryState.SENT  # lesson 1 already went out: history stays as it is
        second = rows_of(session, session.scalars(select(Enrollment).where(Enrollment.course_id == bread.id)).one())[1]
        second.state, second.lease_token = DeliveryState.LEASED, "t" * 32  # claimed, not yet taken over
    clock.advance(timedelta(minutes=1))
    if one_statement:
        assert _unsubscribe_in_one_statement(db, ann.id, None, clock) == "ann@example.org"
    else:
        with db.begin() as session:
            ann = session.scalars(select(Subscriber)).one()
            assert unsubscribe(session, ann, course_id=None, now=clock.now()) == 4
    with db() as session:
        ann = session.scalars(select(Subscriber)).one()
        assert (ann.status, ann.unsubscribed_at) == (SubscriberStatus.UNSUBSCRIBED, clock.now())
        states = Counter(session.scalars(select(Delivery.state)))
        assert states == {DeliveryState.SENT: 1, DeliveryState.CANCELLED: 4}
        assert set(session.scalars(select(Enrollment.status))) == {EnrollmentStatus.UNSUBSCRIBED}
        assert session.scalar(select(func.count()).where(Delivery.lease_token.is_not(None))) == 0


def test_pause_holds_and_resume_reschedules_from_the_next_slot(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=4, weekdays=WEEKDAYS_ONLY)
        ann = get_or_create_subscriber(session, "ann@example.org", timezone_name="Europe/Berlin", now=clock.now())
        enrollment = enroll(session, ann, course, now=clock.now())
        rows_of(session, enrollment)[0].state = DeliveryState.SENT
        session.flush()
        pause(session, enrollment, now=clock.now())
    with db() as session:
        enrollment = session.scalars(select(Enrollment)).one()
        assert enrollment.status == EnrollmentStatus.PAUSED
        assert [row.state for row in rows_of(session, enrollment)] == ["sent", "held", "held", "held"]
    # Ten days later, on Saturday 14 March at noon Berlin time: the next slot is Monday 09:00.
    clock.set(clock.now().replace(day=14, hour=11))
    with db.begin() as session:
        enrollment = session.scalars(select(Enrollment)).one()
        resume(session, enrollment, now=clock.now())
    with db() as session:
        enrollment = session.scalars(select(Enrollment)).one()
        rows = rows_of(session, enrollment)
    assert enrollment.status == EnrollmentStatus.ACTIVE
    assert [row.state for row in rows] == ["sent", "pending", "pending", "pending"]
    local = [row.due_at.astimezone(BERLIN) for row in rows[1:]]
    assert [moment.date() for moment in local] == [date(2026, 3, 16), date(2026, 3, 17), date(2026, 3, 18)]
    assert {(moment.hour, moment.minute) for moment in local} == {(9, 0)}


def test_resume_immediately_sends_the_next_lesson_now(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=3)
        enrollment = enroll(session, get_or_create_subscriber(session, "ann@example.org", now=clock.now()), course, now=clock.now())
        pause(session, enrollment, now=clock.now())
    clock.advance(timedelta(days=3, hours=1))
    with db.begin() as session:
        resume(session, session.scalars(select(Enrollment)).one(), now=clock.now(), immediately=True)
    with db() as session:
        rows = rows_of(session, session.scalars(select(Enrollment)).one())
    assert rows[0].due_at == clock.now() and rows[0].state == DeliveryState.PENDING


def test_re_enrolling_after_unsubscribe_never_resends_a_lesson(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=4)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        enrollment = enroll(session, ann, course, now=clock.now())
        ids = [row.id for row in rows_of(session, enrollment)]
        # Lessons 1 and 2 went out, lesson 3 failed for good; then Ann leaves.
        session.execute(update(Delivery).where(Delivery.id.in_(ids[:2])).values(state=DeliveryState.SENT))
        session.execute(update(Delivery).where(Delivery.id == ids[2]).values(state=DeliveryState.FAILED))
        unsubscribe(session, ann, course_id=course.id, now=clock.now())
    clock.advance(timedelta(days=20))
    with db.begin() as session:
        ann = session.scalars(select(Subscriber)).one()
        enrollment = enroll(session, ann, session.get(type(course), course.id), now=clock.now())
        assert enrollment.status == EnrollmentStatus.ACTIVE
    with db() as session:
        rows = rows_of(session, session.scalars(select(Enrollment)).one())
        assert session.scalar(select(func.count()).select_from(Delivery)) == 4  # no new rows
    assert [row.id for row in rows] == ids
    assert [row.state for row in rows] == ["sent", "sent", "failed", "pending"]
    assert rows[3].due_at == clock.now()  # goes on where she left off, at once


def test_a_completed_course_is_not_restarted(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        enrollment = enroll(session, ann, course, now=clock.now())
        session.execute(update(Delivery).values(state=DeliveryState.SENT))
        enrollment.status = EnrollmentStatus.COMPLETED
    with db() as session:
        before = snapshot(session)
    with db.begin() as session:
        enroll(session, session.scalars(select(Subscriber)).one(), session.get(type(course), course.id), now=clock.now())
    with db() as session:
        assert snapshot(session) == before


def test_pending_enrollment_writes_no_rows(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now())
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now(), status=SubscriberStatus.PENDING)
        enroll(session, ann, course, now=clock.now(), status=EnrollmentStatus.PENDING)
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        confirmed = enroll(session, ann, course, now=clock.now())
        assert confirmed.status == EnrollmentStatus.ACTIVE
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3


@pytest.mark.parametrize("raw", ["ann@example.org\r\nBcc: x@y.example", "not an address", "", "a@b@example.org"])
def test_normalize_email_refuses_bad_addresses(raw: str) -> None:
    with pytest.raises(SubscriptionError):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("Ann\r\nBcc: evil@example.org", "Ann Bcc: evil@example.org"),
        ("  Ann \t  Lee \n", "Ann Lee"),
        ("Zo\u0065\u0308", "Zoë"),  # NFC
        ("Ann\x00\x1b[31mRed", "Ann [31mRed"),
        ("Ann\u2028Lee\u2029", "Ann Lee"),
        ("Ann\x85Lee\x9b31m", "Ann Lee 31m"),  # C1 controls (NEL, CSI) too
        ("x" * 500, "x" * MAX_NAME_LENGTH),
    ],
)
def test_clean_name(raw: str, cleaned: str) -> None:
    assert clean_name(raw) == cleaned


@given(st.text(max_size=300))
def test_clean_name_never_returns_control_characters(raw: str) -> None:
    cleaned = clean_name(raw)
    assert len(cleaned) <= MAX_NAME_LENGTH
    assert not any(unicodedata.category(ch) == "Cc" for ch in cleaned), repr(cleaned)
    assert len(cleaned.splitlines()) <= 1
    assert cleaned == cleaned.lstrip()

