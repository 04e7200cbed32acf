"""The Celery app. `celery -A worker.app worker` and `course worker` both load this."""

from __future__ import annotations

from celery import Celery

from course.settings import get_settings
from worker.config import celery_config, resolve_broker_url


def create_app() -> Celery:
    celery = Celery("course")
    # Resolved when the configuration is first read, not at import: importing the tasks (tests,
    # the CLI's help) must not ping Redis or create files.
    celery.add_defaults(lambda: celery_config(get_settings(), resolve_broker_url(get_settings())))
    return celery


app = create_app()

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
import worker.maintenance  # noqa
import worker.campaign_tasks  # noqa: E402,F401
import worker.observability  # noqa: E402,F401  (heartbeats and metrics, through Celery signals)
