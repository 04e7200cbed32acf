"""A bulk job run by a real Celery worker on PostgreSQL and Redis: the job is queued in the database
(as the admin's request leaves it), the beat task is sent through Redis as beat would send it, and
the worker applies it in batches until every matching subscriber has the tag."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.audience.bulk_jobs import start_bulk_job
from course.audience.directory import parse_filter
from course.audience.enrollment import get_or_create_subscriber
from course.clock import ManualClock
from course.db import make_engine
from course.models import BulkJob, BulkJobState, SubscriberTag
from course.settings import Settings, get_settings
from tests.support.services import make_settings
from worker.app import app as celery_app
from worker.config import ALL_QUEUES, celery_config

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
READERS = 30


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: ManualClock, pg_database_url: str, redis_url: str) -> Iterator[Settings]:
    settings = make_settings(tmp_path, pg_database_url, broker_url=redis_url, bulk_batch_size=7)
    for name, value in {
        "COURSE_DATABASE_URL": pg_database_url, "COURSE_BROKER_URL": redis_url, "COURSE_SECRET_KEY": settings.secret_key,
        "COURSE_VAR_DIR": str(settings.var_dir), "COURSE_BULK_BATCH_SIZE": "7",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    celery_app.conf.update(celery_config(settings, redis_url))
    celery_app._after_fork()
    with start_worker(celery_app, pool="threads", concurrency=2, queues=list(ALL_QUEUES), perform_ping_check=False):
        yield settings
    get_settings.cache_clear()


def test_the_worker_runs_a_queued_bulk_job_to_the_end(stack: Settings, clock: ManualClock) -> None:
    engine = make_engine(stack.sqlalchemy_url)
    sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        for n in range(READERS):
            get_or_create_subscriber(session, f"reader{n:02d}@example.org", now=clock.now())
        get_or_create_subscriber(session, "other@example.net", now=clock.now())
        job_id = start_bulk_job(session, parse_filter({"q": "@example.org"}), "tag-add", value="spring",
                                actor="editor@example.org", admin_id=None, now=clock.now()).job.id  # fmt: skip
    celery_app.send_task("course.bulk_jobs")  # as beat sends it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sessions() as session:
            job = session.get(BulkJob, job_id)
            assert job is not None
            if job.state == BulkJobState.DONE:
                break
        time.sleep(0.2)
    assert (job.state, job.done, job.changed) == (BulkJobState.DONE, READERS, READERS)
    with sessions() as session:
        assert session.scalar(select(func.count()).where(SubscriberTag.tag == "spring")) == READERS
    engine.dispose()
