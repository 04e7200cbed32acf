"""The delivery ledger's concurrency rules on real databases: concurrent claims take disjoint rows
and never wait on each other (PostgreSQL, FOR UPDATE SKIP LOCKED), urgent rows go first, expired
leases come back with a new token, and a lease token admits exactly one send task."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.audience.enrollment import get_or_create_subscriber
from course.ledger import Claim, Outcome, Settled, claim_due, fail_exhausted_leases, insert_lesson_rows, message_ids_from_secret, read_batch, take_over
from course.models import Delivery, DeliveryKind, DeliveryState, Enrollment
from tests.support.ledger_rows import add_rows
from tests.support.pipeline_fixtures import enroll_people, make_course

LEASE = timedelta(minutes=5)
_numbers = itertools.count(1)

IDS = message_ids_from_secret("example.org", "ledger-test-secret")


def claim(sessions: sessionmaker[Session], now: datetime, limit: int = 100) -> Claim | None:
    with sessions.begin() as session:
        return claim_due(session, now=now, limit=limit, lease=LEASE)


def state_of(sessions: sessionmaker[Session], ids: list[int]) -> dict[int, tuple[str, str | None]]:
    with sessions() as session:
        rows = session.execute(select(Delivery.id, Delivery.state, Delivery.lease_token).where(Delivery.id.in_(ids)))
        return {i: (state, token) for i, state, token in rows}


def test_concurrent_claims_take_disjoint_rows_and_all_of_them(pg: sessionmaker[Session], clock: ManualClock) -> None:
    with pg.begin() as session:
        due_ids = add_rows(session, clock.now(), [timedelta(seconds=-n) for n in range(20)])
    # Both claims must be open at the same time: each thread claims, then waits at the barrier
    # holding its row locks until the other has claimed too. A claim that blocked on the other's
    # locks would never reach the barrier, and the barrier's time-out fails the test.
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, Claim | None] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with pg.begin() as session:
                barrier.wait()
                results[name] = claim_due(session, now=clock.now(), limit=15, lease=LEASE)
                barrier.wait()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    a, b = results["a"], results["b"]
    assert a is not None and b is not None
    ids_a, ids_b = set(a.bulk_ids), set(b.bulk_ids)
    assert not ids_a & ids_b
    assert ids_a | ids_b == set(due_ids)
    assert a.token != b.token
    states = state_of(pg, due_ids)
    assert {i for i, (_, token) in states.items() if token == a.token} == ids_a
    assert {i for i, (_, token) in states.items() if token == b.token} == ids_b
    assert {state for state, _ in states.values()} == {DeliveryState.LEASED}


def test_claim_skips_rows_locked_elsewhere_without_waiting(pg: sessionmaker[Session], clock: ManualClock) -> None:
    with pg.begin() as session:
        due_ids = add_rows(session, clock.now(), [timedelta(minutes=-n) for n in range(6)])
    locked = due_ids[:2]
    with pg() as locker:
        # A third connection holds two rows in an open transaction, as a slow dispatcher would.
        assert locker.scalars(select(Delivery.id).where(Delivery.id.in_(locked)).with_for_update()).all() == locked
        with pg.begin() as session:
            # A claim that waited for the locked rows would fail here with LockNotAvailable.
            session.execute(text("SET LOCAL lock_timeout = '1s'"))
            result = claim_due(session, now=clock.now(), limit=100, lease=LEASE)
        assert result is not None and set(result.bulk_ids) == set(due_ids) - set(locked)
        locker.rollback()
    # Once released, the skipped rows are claimable.
    later = claim(pg, clock.now())
    assert later is not None and set(later.bulk_ids) == set(locked)


def test_priority_rows_first_then_by_due_time(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with db.begin() as session:
        bulk = add_rows(session, now, [timedelta(hours=-3), timedelta(hours=-2), timedelta(hours=-1)], priority=100)
        urgent = add_rows(session, now, [timedelta(minutes=-1), timedelta(minutes=-5)], priority=10)
    first = claim(db, now, limit=3)
    assert first is not None
    assert first.urgent_ids == sorted(urgent)
    assert first.bulk_ids == [bulk[0]]  # the oldest bulk row fills the batch
    second = claim(db, now, limit=3)
    assert second is not None and second.urgent_ids == [] and second.bulk_ids == bulk[1:]
    assert claim(db, now) is None


def test_rows_due_later_are_not_claimed(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        now_ids = add_rows(session, clock.now(), [timedelta(0), timedelta(seconds=-1)])
        later_ids = add_rows(session, clock.now(), [timedelta(seconds=1), timedelta(days=1)])
    result = claim(db, clock.now())
    assert result is not None and result.bulk_ids == now_ids
    assert {state for state, _ in state_of(db, later_ids).values()} == {DeliveryState.PENDING}
    clock.advance(timedelta(seconds=1))
    result = claim(db, clock.now())
    assert result is not None and result.bulk_ids == later_ids[:1]


@pytest.mark.parametrize("stuck_state", [DeliveryState.LEASED, DeliveryState.SENDING])
def test_expired_lease_is_reclaimed_with_a_new_token(db: sessionmaker[Session], clock: ManualClock, stuck_state: str) -> None:
    with db.begin() as session:
        ids = add_rows(session, clock.now(), [timedelta(minutes=-1), timedelta(minutes=-2)])
    first = claim(db, clock.now())
    assert first is not None and sorted(first.bulk_ids) == sorted(ids)
    if stuck_state == DeliveryState.SENDING:
        with db.begin() as session:
            assert take_over(session, ids, token=first.token, now=clock.now(), lease=LEASE).jobs
    # Inside the lease nobody else gets the rows.
    clock.advance(LEASE - timedelta(seconds=1))
    assert claim(db, clock.now()) is None
    # The worker died: past the lease the rows come back, under a new token.
    clock.advance(timedelta(seconds=2))
    second = claim(db, clock.now())
    assert second is not None and sorted(second.bulk_ids) == sorted(ids) and second.token != first.token
    assert second.lease_expires_at == clock.now() + LEASE
    assert set(state_of(db, ids).values()) == {(DeliveryState.LEASED, second.token)}
    # The dead worker's token is worthless now; the new holder's works.
    with db.begin() as session:
        assert take_over(session, ids, token=first.token, now=clock.now(), lease=LEASE).jobs == []
    with db.begin() as session:
        assert [job.delivery_id for job in take_over(session, ids, token=second.token, now=clock.now(), lease=LEASE).jobs] == sorted(ids)


def test_fail_exhausted_leases_gives_up_after_max_attempts(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with db.begin() as session:
        exhausted, retryable, live = (add_rows(session, now, [timedelta(minutes=-10)], state=DeliveryState.SENDING)[0] for _ in range(3))
        session.execute(update(Delivery).where(Delivery.id == exhausted).values(attempts=3, lease_expires_at=now - timedelta(seconds=1)))
        session.execute(update(Delivery).where(Delivery.id == retryable).values(attempts=2, lease_expires_at=now - timedelta(seconds=1)))
        session.execute(update(Delivery).where(Delivery.id == live).values(attempts=5, lease_expires_at=now + timedelta(minutes=1)))
    with db.begin() as session:
        assert fail_exhausted_leases(session, now=now, max_attempts=3) == 1
    with db() as session:
        rows = {row.id: row for row in session.scalars(select(Delivery))}
    assert rows[exhausted].state == DeliveryState.FAILED
    assert "lease expired" in (rows[exhausted].last_error or "")
    assert rows[retryable].state == DeliveryState.SENDING and rows[live].state == DeliveryState.SENDING
    # The retryable one is claimed again; the failed one never is.
    result = claim(db, now)
    assert result is not None and result.bulk_ids == [retryable]


def test_take_over_needs_the_current_token_and_admits_one_task(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ids = add_rows(session, clock.now(), [timedelta(0)] * 3)
    result = claim(db, clock.now())
    assert result is not None
    with db.begin() as session:
        assert take_over(session, ids, token="0" * 32, now=clock.now(), lease=LEASE).jobs == []
    assert {state for state, _ in state_of(db, ids).values()} == {DeliveryState.LEASED}
    with db.begin() as session:
        batch = take_over(session, ids, token=result.token, now=clock.now(), lease=LEASE)
    assert [job.delivery_id for job in batch.jobs] == ids
    assert all(job.attempts == 1 for job in batch.jobs)
    # The same task delivered twice by the broker: the duplicate gets nothing.
    with db.begin() as session:
        assert take_over(session, ids, token=result.token, now=clock.now(), lease=LEASE).jobs == []
    with db() as session:
        assert set(session.scalars(select(Delivery.attempts).where(Delivery.id.in_(ids)))) == {1}
        assert set(session.scalars(select(Delivery.state).where(Delivery.id.in_(ids)))) == {DeliveryState.SENDING}


def test_concurrent_duplicate_take_over_splits_nothing_twice(pg: sessionmaker[Session], clock: ManualClock) -> None:
    with pg.begin() as session:
        ids = add_rows(session, clock.now(), [timedelta(0)] * 10)
    result = claim(pg, clock.now())
    assert result is not None
    barrier = threading.Barrier(2, timeout=10)
    taken: list[list[int]] = []

    def task() -> None:
        barrier.wait()
        with pg.begin() as session:
            taken.append([job.delivery_id for job in take_over(session, ids, token=result.token, now=clock.now(), lease=LEASE).jobs])

    threads = [threading.Thread(target=task) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(taken) == 2
    assert sorted(taken[0] + taken[1]) == ids  # every row taken exactly once in all


def test_read_batch_reads_what_take_over_reads_and_changes_nothing(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now())
        enroll_people(session, course, ["ann@example.org", "ben@example.org"], now=clock.now())
    with db() as session:
        ids = list(session.scalars(select(Delivery.id).where(Delivery.state == DeliveryState.PENDING).order_by(Delivery.id)))
        before = state_of(db, ids)
        read = read_batch(session, ids)
    assert state_of(db, ids) == before
    result = claim(db, clock.now() + timedelta(days=30))
    assert result is not None
    with db.begin() as session:
        taken = take_over(session, ids, token=result.token, now=clock.now(), lease=LEASE)
    # Same rows, same content; only the attempt count differs (take_over counts the attempt).
    assert [(j.delivery_id, j.email, j.lesson_id) for j in read.jobs] == [(j.delivery_id, j.email, j.lesson_id) for j in taken.jobs]
    assert read.lessons == taken.lessons and read.courses == taken.courses
    assert {j.attempts for j in read.jobs} == {0} and {j.attempts for j in taken.jobs} == {1}


def test_insert_lesson_rows_gives_a_cohort_one_row_each(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=1)
        people = enroll_people(session, course, ["ann@example.org", "ben@example.org", "cy@example.org"], now=clock.now())
        other = make_course(session, now=clock.now(), slug="other", lessons=1)
        lesson_id = other.lessons[0].id
        cohort = select(Enrollment.id, Enrollment.subscriber_id).where(Enrollment.course_id == course.id)
        due = clock.now() + timedelta(hours=2)
        assert insert_lesson_rows(session, lesson_id, cohort, due_at=due, state=DeliveryState.PENDING, now=clock.now()) == 3
    with db() as session:
        rows = session.scalars(select(Delivery).where(Delivery.lesson_id == lesson_id).order_by(Delivery.subscriber_id)).all()
    assert [row.subscriber_id for row in rows] == [person.id for person in people]
    assert {(row.state, row.kind, row.attempts, row.sent_at) for row in rows} == {(DeliveryState.PENDING, DeliveryKind.LESSON, 0, None)}
    assert all(row.due_at == due for row in rows)


def test_an_exhausted_lease_the_journal_holds_is_settled_as_sent_not_failed(db: sessionmaker[Session], clock: ManualClock) -> None:
    now = clock.now()
    with db.begin() as session:
        lost, accepted = (add_rows(session, now, [timedelta(minutes=-10)], state=DeliveryState.SENDING)[0] for _ in range(2))
        session.execute(
            update(Delivery).where(Delivery.id.in_([lost, accepted])).values(attempts=3, lease_expires_at=now - timedelta(seconds=1))
        )
    asked: list[list[int]] = []

    def journal(ids: Sequence[int]) -> set[int]:
        asked.append(sorted(ids))
        return {accepted, 999_999}  # an id the journal holds that is not exhausted changes nothing

    with db.begin() as session:
        assert fail_exhausted_leases(session, now=now, max_attempts=3, accepted=journal, message_ids=IDS) == 1
    assert asked == [sorted([lost, accepted])]
    with db() as session:
        rows = {row.id: row for row in session.scalars(select(Delivery))}
    assert rows[lost].state == DeliveryState.FAILED
    assert rows[accepted].state == DeliveryState.SENT and rows[accepted].sent_at is not None
    assert rows[accepted].message_id == IDS.for_delivery(accepted) and rows[accepted].lease_token is None


def test_each_settled_kind_is_a_list_of_outcome_and_a_misspelt_one_does_not_exist() -> None:
    """Issue #23: outcomes were named by strings (getattr(group, "sent")), so a typo failed only in
    the send loop. A kind is now a member of Settled, each checked at import against Outcome."""
    outcome = Outcome()
    for number, kind in enumerate(Settled):
        outcome.add(kind, number)
    assert (outcome.sent, outcome.cancelled, outcome.held, outcome.released) == ([0], [1], [2], [3])
    with pytest.raises(ValueError):
        Settled("sentt")


def test_take_over_hands_each_job_the_journal_epoch_of_the_attempt_before(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """The epoch a take-over finds is the one the previous take-over left (issue #24), read in the
    same statement that replaces it."""
    now = clock.now()
    with sessions.begin() as session:
        add_rows(session, now, [timedelta(seconds=-1)])
    first = claim(sessions, now)
    assert first is not None
    with sessions.begin() as session:
        (job,) = take_over(session, first.urgent_ids + first.bulk_ids, token=first.token, now=now, lease=LEASE, journal_epoch="a" * 32).jobs
    assert job.journal_epoch is None  # never taken over before
    later = now + LEASE + timedelta(seconds=1)  # the worker was lost: the lease runs out
    again = claim(sessions, later)
    assert again is not None
    with sessions.begin() as session:
        (job,) = take_over(session, again.urgent_ids + again.bulk_ids, token=again.token, now=later, lease=LEASE, journal_epoch="b" * 32).jobs
    assert job.journal_epoch == "a" * 32
    with sessions() as session:
        assert session.get(Delivery, job.delivery_id).journal_epoch == "b" * 32  # type: ignore[union-attr]
