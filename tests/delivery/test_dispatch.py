"""The dispatcher's back-pressure: it hands out at most dispatch_max_in_flight rows at a time, so a
burst waits in the ledger (where leases cannot expire) rather than in the broker, and confirmations
still go out while the pipeline is full."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.models import Delivery, DeliveryState
from tests.support.services import make_settings
from tests.support.ledger_rows import add_rows


def leased(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).where(Delivery.state == DeliveryState.LEASED)) or 0


def test_dispatch_stops_at_max_in_flight_but_still_claims_urgent_mail(
    db: sessionmaker[Session], clock: ManualClock, tmp_path: Path, database_url: str  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url, dispatch_max_in_flight=5, dispatch_batch_size=3, send_chunk_size=2)
    with db.begin() as session:
        bulk_ids = add_rows(session, clock.now(), [timedelta(seconds=-n) for n in range(12, 0, -1)])
    tasks: list[tuple[list[int], str, bool]] = []

    def enqueue(ids: list[int], token: str, urgent: bool) -> None:
        tasks.append((ids, token, urgent))

    first = dispatch_due(db, settings=settings, clock=clock, enqueue=enqueue)
    assert (first.claimed, first.throttled) == (5, True)  # 3, then the 2 that were room left
    assert leased(db) == 5
    assert all(len(ids) <= 2 and not urgent for ids, _, urgent in tasks)
    first_ids = {i for ids, _, _ in tasks for i in ids}
    assert first_ids == set(bulk_ids[:5])  # the five due longest ago

    # Still full: bulk rows wait in the ledger, but a confirmation due now is claimed anyway.
    with db.begin() as session:
        (urgent_id,) = add_rows(session, clock.now(), [timedelta(0)], priority=10)
    tasks.clear()
    second = dispatch_due(db, settings=settings, clock=clock, enqueue=enqueue)
    assert second.claimed == 1
    assert tasks == [([urgent_id], tasks[0][1], True)]

    # The leases run out (say the worker holding them died): they count as in flight no more, and
    # the next run hands out five again: the urgent row first, then the rows due longest ago.
    clock.advance(timedelta(minutes=10))
    tasks.clear()
    third = dispatch_due(db, settings=settings, clock=clock, enqueue=enqueue)
    assert third.claimed == 5
    assert {i for ids, _, _ in tasks for i in ids} == {urgent_id, *bulk_ids[:4]}
    assert leased(db) == 6  # the five just handed out, and one expired row waiting for its turn


def test_urgent_rows_go_out_in_chunks_of_their_own_size_ahead_of_bulk(
    db: sessionmaker[Session], clock: ManualClock, tmp_path: Path, database_url: str  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url, send_chunk_size=4, urgent_chunk_size=2)
    with db.begin() as session:
        bulk_ids = add_rows(session, clock.now(), [timedelta(seconds=-n) for n in range(5, 0, -1)])
        urgent_ids = add_rows(session, clock.now(), [timedelta(0)] * 5, priority=10)
    tasks: list[tuple[list[int], bool]] = []
    dispatch_due(db, settings=settings, clock=clock, enqueue=lambda ids, _token, urgent: tasks.append((ids, urgent)))
    assert [(len(ids), urgent) for ids, urgent in tasks] == [(2, True), (2, True), (1, True), (4, False), (1, False)]
    assert sorted(i for ids, urgent in tasks if urgent for i in ids) == sorted(urgent_ids)
    assert sorted(i for ids, urgent in tasks if not urgent for i in ids) == sorted(bulk_ids)


def test_the_signups_task_claims_only_urgent_rows_and_counts_nothing_else(
    db: sessionmaker[Session], clock: ManualClock, tmp_path: Path, database_url: str  # noqa: F811
) -> None:
    settings = make_settings(tmp_path, database_url, urgent_chunk_size=2)
    with db.begin() as session:
        bulk_ids = add_rows(session, clock.now(), [timedelta(seconds=-n) for n in range(3, 0, -1)])
        urgent_ids = add_rows(session, clock.now(), [timedelta(0)] * 3, priority=10)
    tasks: list[tuple[list[int], bool]] = []
    report = dispatch_due(db, settings=settings, clock=clock, enqueue=lambda ids, _token, urgent: tasks.append((ids, urgent)), urgent_only=True)
    assert report.claimed == 3 and not report.throttled
    assert [(len(ids), urgent) for ids, urgent in tasks] == [(2, True), (1, True)]
    assert sorted(i for ids, _ in tasks for i in ids) == sorted(urgent_ids)
    with db() as session:
        states = set(session.scalars(select(Delivery.state).where(Delivery.id.in_(bulk_ids))))
    assert states == {DeliveryState.PENDING}  # the bulk rows wait for the dispatcher's own run
