"""Bulk jobs: a bulk action (course.audience.directory) over more subscribers than a request runs
inline, applied by the worker in keyset batches with its progress in the database.

1. `start_bulk_job` checks the action and its value at once (an unknown tag, course or action is
   refused in the request, not found later by the worker), then stores the job: the action, its
   value, the filter as its URL query, who asked, and how many subscribers matched. Its `key` is a
   hash of action, value, filter, admin and day (or of a key the client gave): the same request
   again returns the same job instead of starting another.
2. `run_batch` applies the action to the next `batch_size` matching ids above `last_id` (keyset
   order, never OFFSET) in the caller's transaction, and moves `last_id`, `done` and `changed` in
   the same transaction: a worker that dies loses at most its uncommitted batch, and the next run
   goes on from the last committed one. The actions are idempotent, so even a batch done twice
   changes nothing. On PostgreSQL the job's row is locked (SKIP LOCKED) for the batch, so two
   workers never run the same batch; SQLite has one writer anyway.
3. `run_job` runs batches, each its own transaction, until the job is done; a refusal found on
   the way (the course was deleted meanwhile) marks it failed with the reason.

The database is the only schedule: beat polls open jobs (worker/bulk_tasks.py), so a job survives
a restart of every process."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from course.audience.directory import (
    BULK_ACTIONS,
    DirectoryError,
    SubscriberFilter,
    add_tag,
    check_tag,
    count_matching,
    enrol_all,
    matching_ids,
    parse_filter,
    remove_tag,
    reason_text,
    unsubscribe_all,
)
from course.models import BulkJob, BulkJobState, Course, Subscriber

BATCH_SIZE = 5000
MAX_CLIENT_KEY_CHARS = 100
OPEN_STATES = (BulkJobState.QUEUED, BulkJobState.RUNNING)


def job_key(*, action: str, value: str, chosen: SubscriberFilter, actor: str, day: str, client_key: str = "") -> str:
    """The job's idempotency key: the client's own key (per actor), else what the request asks,
    who asks and on which day. Pure."""
    parts = ("client", actor, client_key) if client_key else ("request", action, value, chosen.query_string(), actor, day)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def check_value(session: Session, action: str, value: str) -> str:
    """The action's value, checked and normalised, or DirectoryError (as the inline path would)."""
    if action not in BULK_ACTIONS:
        raise DirectoryError(f"unknown bulk action {action[:40]!r}: one of {', '.join(BULK_ACTIONS)}", fields={"action": "unknown"})
    if action in ("tag-add", "tag-remove"):
        return check_tag(value)
    if action == "enrol":
        slug = value.strip()
        if session.scalar(select(Course.id).where(Course.slug == slug)) is None:
            raise DirectoryError(f"unknown course {slug[:100]!r}", fields={"course": "no such course"})
        return slug
    return reason_text(value)


@dataclass(frozen=True)
class StartedJob:
    job: BulkJob
    created: bool  # False: the same request was made before, this is its job


def start_bulk_job(
    session: Session, chosen: SubscriberFilter, action: str, *, value: str, actor: str, admin_id: int | None,
    now: datetime, client_key: str = "",
) -> StartedJob:  # fmt: skip
    """The queued job for this request (see the module's step 1), or the one already started for it."""
    client_key = client_key.strip()
    if len(client_key) > MAX_CLIENT_KEY_CHARS or not client_key.isprintable():
        raise DirectoryError(f"an idempotency key is at most {MAX_CLIENT_KEY_CHARS} printable characters", fields={"key": "too long"})
    value = check_value(session, action, value)
    key = job_key(action=action, value=value, chosen=chosen, actor=actor, day=now.date().isoformat(), client_key=client_key)
    if (existing := session.scalars(select(BulkJob).where(BulkJob.key == key)).first()) is not None:
        return StartedJob(existing, created=False)
    job = BulkJob(
        key=key, action=action, value=value, filter_query=chosen.query_string(), state=BulkJobState.QUEUED,
        total=count_matching(session, chosen), done=0, changed=0, last_id=0, created_by=actor, admin_id=admin_id,
        created_at=now, updated_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():  # two requests at once: the second finds the first's job
            session.add(job)
    except IntegrityError:
        existing = session.scalars(select(BulkJob).where(BulkJob.key == key)).one()
        return StartedJob(existing, created=False)
    return StartedJob(job, created=True)


def job_filter(job: BulkJob) -> SubscriberFilter:
    return parse_filter(dict(parse_qsl(job.filter_query)))


def run_batch(session: Session, job_id: int, *, now: datetime, batch_size: int = BATCH_SIZE) -> bool:
    """One batch of the job (the module's step 2); True while more may follow."""
    job = session.scalars(select(BulkJob).where(BulkJob.id == job_id).with_for_update(skip_locked=True)).first()
    if job is None or job.state not in OPEN_STATES:
        return False
    chosen = job_filter(job)
    ids = list(
        session.scalars(matching_ids(chosen).where(Subscriber.id > job.last_id).order_by(Subscriber.id).limit(batch_size))
    )
    job.updated_at = now
    if not ids:
        job.state, job.finished_at = BulkJobState.DONE, now
        return False
    # The batch as an id range of the filter (no list of 5,000 parameters): the same ids.
    batch = matching_ids(chosen).where(Subscriber.id > job.last_id, Subscriber.id <= ids[-1])
    if job.action == "tag-add":
        changed = add_tag(session, batch, job.value, actor=job.created_by, now=now)
    elif job.action == "tag-remove":
        changed = remove_tag(session, batch, job.value, actor=job.created_by, now=now)
    elif job.action == "enrol":
        changed = enrol_all(session, batch, job.value, actor=job.created_by, now=now)
    else:
        changed = unsubscribe_all(session, batch, actor=job.created_by, reason=job.value, now=now)
    job.state = BulkJobState.RUNNING
    job.done += len(ids)
    job.changed += changed
    job.last_id = ids[-1]
    if len(ids) < batch_size:
        job.state, job.finished_at = BulkJobState.DONE, now
        return False
    return True


def run_job(sessions: sessionmaker[Session], job_id: int, *, now: Callable[[], datetime], batch_size: int = BATCH_SIZE) -> None:
    """Every remaining batch of the job, each in its own transaction (the module's step 3)."""
    while True:
        try:
            with sessions.begin() as session:
                more = run_batch(session, job_id, now=now(), batch_size=batch_size)
        except DirectoryError as exc:
            with sessions.begin() as session:
                job = session.get(BulkJob, job_id)
                if job is not None:
                    job.state, job.error, job.finished_at, job.updated_at = BulkJobState.FAILED, str(exc), now(), now()
            return
        if not more:
            return


def open_job_ids(session: Session) -> list[int]:
    """Jobs queued or under way, oldest first."""
    return list(session.scalars(select(BulkJob.id).where(BulkJob.state.in_(OPEN_STATES)).order_by(BulkJob.id)))


def percent(job: BulkJob) -> int:
    if job.state == BulkJobState.DONE:
        return 100
    return min(99, job.done * 100 // job.total) if job.total else 0
