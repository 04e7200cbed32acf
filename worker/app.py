"""The Celery app. `celery -A worker.app worker` and `course worker` both load this."""

from __future__ import annotations

from celery import Celery

from course.settings import get_settings
from worker.config import celery_config, resolve_broker_url


def create_app() -> Celery:
    settings = get_settings()
    celery = Celery("course")
    celery.conf.update(celery_config(settings, resolve_broker_url(settings)))
    return celery


app = create_app()

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
