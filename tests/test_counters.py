"""The counters behind the dashboard and the funnels (course.counters): the ledger adds exactly the
rows it settles (a row whose lease was lost is not counted), the event record adds each event, the
counts equal what a backfill from the rows finds, and concurrent writers lose no increment."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course import counters
from course.audience.events import record_event, record_events
from course.clock import ManualClock
from course.ledger import Outcome, claim_due, record, suppress, take_over
from course.models import Counter, Delivery, DeliveryState, Lesson, SubscriberEventKind
from tests.support.pipeline_fixtures import enroll_people, make_course

LEASE = timedelta(minutes=5)


def _figures(session: Session) -> dict[tuple[str, str], int]:
    """Every counter summed over days and shards."""
    rows = session.execute(select(Counter.scope, Counter.key, func.sum(Counter.value)).group_by(Counter.scope, Counter.key))
    return {(scope, key): int(value) for scope, key, value in rows if value}


def test_the_ledger_counts_what_it_settles_and_a_backfill_agrees(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with sessions.begin() as session:
        course = make_course(session, now=now, lessons=3)
        people = enroll_people(session, course, [f"r{n}@example.org" for n in range(6)], now=now)
        first_lesson = session.scalar(select(func.min(Lesson.id)).where(Lesson.course_id == course.id))
    later = now + timedelta(hours=1)  # lesson 1 is due at once, lesson 2 the next morning
    with sessions.begin() as session:
        claim = claim_due(session, now=later, limit=100, lease=LEASE)
    assert claim is not None and claim.size == 6  # lesson 1 of each reader
    with sessions.begin() as session:
        jobs = take_over(session, claim.bulk_ids, token=claim.token, now=later, lease=LEASE).jobs
    row_of = {job.subscriber_id: job.delivery_id for job in jobs}
    a, b, c, d, e, f = (row_of[person.id] for person in people)
    with sessions.begin() as session:
        record(
            session,
            Outcome(sent=[a, b, c], failed=[(d, "550 no such user? no: a local error")], bounced=[(e, people[4].id, "550 gone")]),
            token=claim.token, now=later, message_id_domain="example.org",
        )  # fmt: skip
        # A task that lost its lease reports too: none of its rows is settled, so none is counted.
        record(session, Outcome(sent=[f], failed=[(f, "late")]), token="0" * 36, now=later, message_id_domain="example.org")
    with sessions() as session:
        counted = _figures(session)
        day = counters.utc_day(later)
        assert counters.per_day(session, counters.DELIVERIES, ["sent", "failed", "bounced"], first=day, last=day) == {
            "sent": {day: 3}, "failed": {day: 1}, "bounced": {day: 1},
        }  # fmt: skip
        assert counters.totals(session, counters.LESSON_SENT, [str(first_lesson)]) == {str(first_lesson): 3}
        assert counted[(counters.EVENTS, SubscriberEventKind.BOUNCED.value)] == 1
        assert session.scalar(select(func.count()).where(Delivery.state == DeliveryState.SENT, Delivery.kind == "lesson")) == 3
    # What the rows imply (the migration's backfill) is what was counted as they changed.
    with sessions.begin() as session:
        counters.backfill(session)
    with sessions() as session:
        assert _figures(session) == counted


def test_events_are_counted_per_kind_and_day_and_a_bounce_once(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with sessions.begin() as session:
        course = make_course(session, now=now, lessons=1)
        ids = [person.id for person in enroll_people(session, course, [f"e{n}@example.org" for n in range(4)], now=now)]
        record_event(session, ids[0], SubscriberEventKind.SIGNED_UP, now=now)
        record_events(session, ids[1:], SubscriberEventKind.SIGNED_UP, now=now + timedelta(days=1))
        record_events(session, select(Counter.shard).where(Counter.shard < 0), SubscriberEventKind.CONFIRMED, now=now)  # none
        suppress(session, ids[:2], now=now)
        suppress(session, ids[:2], now=now)  # already bounced: no new event, no new count
    with sessions() as session:
        figures = counters.per_day(session, counters.EVENTS, ["signed_up", "confirmed", "bounced"], first=now.date(), last=now.date() + timedelta(days=1))
    assert figures == {
        "signed_up": {now.date(): 1, now.date() + timedelta(days=1): 3},
        "confirmed": {},
        "bounced": {now.date(): 2},
    }


@pytest.mark.parametrize("threads", [8])
def test_concurrent_writers_lose_no_increment(pg_database_url: str, threads: int) -> None:
    """Writers in many threads add to one figure at once, each in transactions of its own: the
    upserts serialise per shard and the sum is exact (no lost update, no deadlock)."""
    from course.db import make_engine

    engine = make_engine(pg_database_url)
    sessions = sessionmaker(engine)
    today = counters.utc_day(datetime.now(UTC))
    rounds = 40
    start = threading.Barrier(threads, timeout=20)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with sessions.begin() as session:
                    counters.add(session, {
                        (counters.DELIVERIES, "sent", today): 2,
                        (counters.LESSON_SENT, "7", today): 1,
                    })  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    try:
        assert not errors, errors
        with sessions() as session:
            assert counters.totals(session, counters.DELIVERIES, ["sent"]) == {"sent": 2 * rounds * threads}
            assert counters.totals(session, counters.LESSON_SENT, ["7"]) == {"7": rounds * threads}
            assert 1 < session.scalar(select(func.count(func.distinct(Counter.shard)))) <= counters.SHARDS
    finally:
        engine.dispose()
