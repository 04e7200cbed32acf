"""Bulk jobs, on PostgreSQL and SQLite, with a small inline limit and small batches so ~30 rows take
the job path: a filter over the limit is refused inline and becomes a job; the same request again
is the same job; the task function applies it in keyset batches, each committed with its progress;
a run stopped half way goes on from its last batch and a job run again changes nothing; a job
whose course disappeared fails with the reason and keeps what it did."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from course.audience.bulk_jobs import job_key, open_job_ids, percent, run_batch, run_job, start_bulk_job
from course.audience.directory import DirectoryError, TooManyForInline, bulk_action, parse_filter
from course.audience.enrollment import get_or_create_subscriber
from course.audience.events import events_of
from course.clock import ManualClock
from course.models import (
    BulkJob,
    BulkJobState,
    Course,
    Enrollment,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    SubscriberTag,
)
from tests.support.pipeline_fixtures import make_course

ADMIN = "editor@example.org"
READERS = 30


def _people(db: sessionmaker[Session], clock: ManualClock) -> list[int]:
    with db.begin() as session:
        make_course(session, now=clock.now(), lessons=2)
        ids = [
            get_or_create_subscriber(session, f"reader{n:03d}@example.org", now=clock.now() + timedelta(seconds=n)).id
            for n in range(READERS)
        ]
        get_or_create_subscriber(session, "outsider@example.net", now=clock.now())
    return ids


def _job(db: sessionmaker[Session], job_id: int) -> BulkJob:
    with db() as session:
        job = session.get(BulkJob, job_id)
        assert job is not None
        return job


def test_the_key_is_the_request_or_the_clients_own() -> None:
    chosen = parse_filter({"q": "reader"})
    same = dict(action="tag-add", value="spring", chosen=chosen, actor=ADMIN, day="2026-03-05")
    assert job_key(**same) == job_key(**same)  # type: ignore[arg-type]
    assert job_key(**same) != job_key(**{**same, "day": "2026-03-06"})  # type: ignore[arg-type]
    assert job_key(**same) != job_key(**{**same, "actor": "other@example.org"})  # type: ignore[arg-type]
    assert job_key(**same) != job_key(**{**same, "chosen": parse_filter({"q": "reader", "tag": "x"})})  # type: ignore[arg-type]
    assert job_key(**same, client_key="k1") == job_key(**{**same, "value": "other"}, client_key="k1")  # type: ignore[arg-type]


def test_over_the_inline_limit_a_job_runs_in_batches_and_repeats_as_the_same_job(db: sessionmaker[Session], clock: ManualClock) -> None:
    ids = _people(db, clock)
    readers = parse_filter({"q": "@example.org"})
    with pytest.raises(TooManyForInline) as refused, db.begin() as session:
        bulk_action(session, readers, "tag-add", value="spring", actor=ADMIN, now=clock.now(), limit=10)
    assert refused.value.matched == READERS
    with db() as session:
        assert session.scalar(select(func.count()).select_from(SubscriberTag)) == 0  # nothing done inline

    with db.begin() as session:
        started = start_bulk_job(session, readers, "tag-add", value=" spring ", actor=ADMIN, admin_id=None, now=clock.now())
        job_id = started.job.id
        assert started.created and started.job.total == READERS and started.job.value == "spring"
    with db.begin() as session:  # the same request again (later the same day): the same job
        again = start_bulk_job(session, readers, "tag-add", value="spring", actor=ADMIN, admin_id=None, now=clock.now() + timedelta(hours=1))
        assert (again.job.id, again.created) == (job_id, False)
    with db() as session:
        assert open_job_ids(session) == [job_id]

    with db.begin() as session:  # one batch, as a worker that then dies would have committed
        assert run_batch(session, job_id, now=clock.now(), batch_size=12) is True
    first = _job(db, job_id)
    assert (first.state, first.done, first.changed, first.last_id) == (BulkJobState.RUNNING, 12, 12, ids[11])
    assert 0 < percent(first) < 100

    run_job(db, job_id, now=clock.now, batch_size=12)  # goes on from the last committed batch
    done = _job(db, job_id)
    assert (done.state, done.done, done.changed, done.total) == (BulkJobState.DONE, READERS, READERS, READERS)
    assert done.finished_at is not None and percent(done) == 100
    with db() as session:
        assert session.scalar(select(func.count()).select_from(SubscriberTag)) == READERS
        assert session.scalar(select(func.count()).where(SubscriberEvent.kind == "tag_added")) == READERS
        assert [event.actor for event in events_of(session, ids[0])] == [ADMIN]
        assert open_job_ids(session) == []

    with db.begin() as session:  # the task run again on a finished job: nothing
        assert run_batch(session, job_id, now=clock.now(), batch_size=12) is False
    with db.begin() as session:  # a re-run of the batches themselves changes nothing either
        session.get(BulkJob, job_id).state, session.get(BulkJob, job_id).last_id = BulkJobState.RUNNING, 0  # type: ignore[union-attr]
    run_job(db, job_id, now=clock.now, batch_size=12)
    with db() as session:
        assert session.get(BulkJob, job_id).changed == READERS  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).where(SubscriberEvent.kind == "tag_added")) == READERS


def test_enrol_and_unsubscribe_jobs_record_the_admin_and_a_vanished_course_fails_the_job(db: sessionmaker[Session], clock: ManualClock) -> None:
    ids = _people(db, clock)
    readers = parse_filter({"q": "@example.org"})
    with db.begin() as session:
        enrol = start_bulk_job(session, readers, "enrol", value="bread", actor=ADMIN, admin_id=None, now=clock.now()).job.id
        stop = start_bulk_job(session, readers, "unsubscribe", value="list cleanup", actor=ADMIN, admin_id=None, now=clock.now(), client_key="c-1").job.id
    run_job(db, enrol, now=clock.now, batch_size=8)
    run_job(db, stop, now=clock.now, batch_size=8)
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == READERS
        assert set(session.scalars(select(Subscriber.status).where(Subscriber.id.in_(ids)))) == {SubscriberStatus.UNSUBSCRIBED}
        unsubscribed = [event for event in events_of(session, ids[-1]) if event.kind == "unsubscribed"]
        assert unsubscribed[0].actor == ADMIN and unsubscribed[0].detail == {"reason": "list cleanup"}
        assert _job(db, stop).changed == READERS
        outsider = session.scalar(select(Subscriber.status).where(Subscriber.email == "outsider@example.net"))
        assert outsider == SubscriberStatus.ACTIVE

    with db.begin() as session:  # refused at the start, not found later by the worker
        with pytest.raises(DirectoryError, match="unknown course"):
            start_bulk_job(session, readers, "enrol", value="nope", actor=ADMIN, admin_id=None, now=clock.now())
        with pytest.raises(DirectoryError, match="a tag is"):
            start_bulk_job(session, readers, "tag-add", value="two words", actor=ADMIN, admin_id=None, now=clock.now())
        with pytest.raises(DirectoryError, match="unknown bulk action"):
            start_bulk_job(session, readers, "erase", value="", actor=ADMIN, admin_id=None, now=clock.now())
    with db.begin() as session:
        make_course(session, now=clock.now(), lessons=1, slug="short")
        everyone = parse_filter({})
        late = start_bulk_job(session, everyone, "enrol", value="short", actor=ADMIN, admin_id=None, now=clock.now()).job.id
    with db.begin() as session:
        session.execute(update(Course).where(Course.slug == "short").values(slug="renamed"))  # gone by that name
    run_job(db, late, now=clock.now, batch_size=8)
    failed = _job(db, late)
    assert failed.state == BulkJobState.FAILED and "unknown course" in (failed.error or "") and failed.done == 0
