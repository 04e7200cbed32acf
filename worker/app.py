"""The Celery app. `celery -A worker.app worker` and `course worker` both load this."""

from __future__ import annotations

from celery import Celery

from typing import Any

from course.settings import get_settings, refuse_unsafe
from worker.config import celery_config, resolve_broker_url


def _configuration() -> dict[str, Any]:
    settings = get_settings()
    # A worker or beat started any way at all (`course worker`, `celery -A worker.app beat`) reads
    # this first: in production, unsafe settings stop it here, as they stop the web app.
    refuse_unsafe(settings)
    return celery_config(settings, resolve_broker_url(settings))


def create_app() -> Celery:
    celery = Celery("course")
    # Resolved when the configuration is first read, not at import: importing the tasks (tests,
    # the CLI's help) must not ping Redis or create files.
    celery.add_defaults(_configuration)
    return celery


app = create_app()

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
import worker.maintenance  # noqa
import worker.campaign_tasks  # noqa: E402,F401
import worker.feed_tasks  # noqa: E402,F401
import worker.bounce_tasks  # noqa: E402,F401
import worker.bulk_tasks  # noqa: E402,F401
import worker.observability  # noqa: E402,F401  (heartbeats and metrics, through Celery signals)
