"""Bulk jobs run by beat: a thin shell around course.audience.bulk_jobs. Each open job is run batch
by batch, each batch its own transaction, so a worker that stops loses at most one batch and the
next run goes on after the last one committed."""

from __future__ import annotations

import logging

from course.audience.bulk_jobs import open_job_ids, run_job
from course.clock import get_clock
from course.db import session_factory
from course.settings import get_settings
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name="course.bulk_jobs", ignore_result=True)
def run_bulk_jobs() -> int:
    """Every queued or running bulk job, oldest first; returns how many were run."""
    settings = get_settings()
    sessions = session_factory(settings)
    clock = get_clock(settings)
    with sessions() as session:
        job_ids = open_job_ids(session)
    for job_id in job_ids:
        run_job(sessions, job_id, now=clock.now, batch_size=settings.bulk_batch_size)
        log.info("bulk job %d run", job_id)
    return len(job_ids)
