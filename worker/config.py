"""Celery configuration from the one settings object.

The broker is Redis in production. On one machine with no Redis, an embedded broker (kombu's
SQLAlchemy transport on a SQLite file under var/) lets `course run` work with no server at all.
"""

from __future__ import annotations

from typing import Any

import redis

from course.settings import Settings
from worker.embedded_broker import register as register_embedded_broker

register_embedded_broker()

DISPATCH_QUEUE = "dispatch"
PRIORITY_QUEUE = "priority"  # confirmations and other mail a person is waiting for
BULK_QUEUE = "bulk"  # lessons and newsletters
ALL_QUEUES = (PRIORITY_QUEUE, DISPATCH_QUEUE, BULK_QUEUE)


class BrokerUnavailable(RuntimeError):
    pass


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def resolve_broker_url(settings: Settings) -> str:
    """COURSE_BROKER_URL if set; else REDIS_URL when it answers; else, outside production, the
    embedded SQLite broker. Production never falls back silently: a dead Redis is an error."""
    if settings.broker_url:
        return settings.broker_url
    if settings.redis_url:
        if redis_answers(settings.redis_url):
            return settings.redis_url
        if settings.env == "production":
            raise BrokerUnavailable(f"Redis at {settings.redis_url} does not answer")
    elif settings.env == "production":
        raise BrokerUnavailable("set REDIS_URL (or COURSE_BROKER_URL) in production")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return f"embedded+sqlite:///{settings.var_dir / 'broker.sqlite'}"


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    is_redis = broker_url.startswith(("redis://", "rediss://"))
    return {
        "broker_url": broker_url,
        "result_backend": broker_url if is_redis else None,
        "task_ignore_result": True,
        # A send task is acknowledged only after it ran: a worker killed mid-task leaves it on the
        # broker to be delivered again, and the lease token makes that second run send nothing twice.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Redis re-delivers unacknowledged tasks after this long; keep it past the lease. Queues are
        # read in the order a worker names them (priority first), not round-robin: round-robin
        # gave a confirmation task one turn in two, behind a 500-email bulk task each time, and a
        # signup burst during a newsletter waited 100+ s for its confirmations (bench --scenario mixed).
        "broker_transport_options": (
            {"visibility_timeout": settings.lease_seconds * 2, "queue_order_strategy": "priority"} if is_redis else {}
        ),
        "task_default_queue": BULK_QUEUE,
        "task_routes": {"course.dispatch": {"queue": DISPATCH_QUEUE}, "course.signups": {"queue": DISPATCH_QUEUE}},
        "beat_schedule": {
            "dispatch-due-deliveries": {
                "task": "course.dispatch",
                "schedule": settings.dispatch_interval_seconds,
                # A dispatch that waited longer than one interval is stale: the next one is coming.
                "options": {"expires": settings.dispatch_interval_seconds * 2},
            },
            # Queued signups and their confirmations, between two dispatch runs (worker/tasks.py).
            "handle-queued-signups": {
                "task": "course.signups",
                "schedule": settings.signup_interval_seconds,
                "options": {"expires": settings.signup_interval_seconds * 2},
            },
            # Courses made from a blog's feed get its new entries as lessons (worker/feed_tasks.py).
            "poll-course-feeds": {
                "task": "course.poll_feeds",
                "schedule": settings.feed_poll_interval_seconds,
                "options": {"expires": settings.feed_poll_interval_seconds},
            },
            # Bulk actions too large for a request, in keyset batches (worker/bulk_tasks.py).
            "run-bulk-jobs": {
                "task": "course.bulk_jobs",
                "schedule": settings.bulk_job_interval_seconds,
                "options": {"expires": settings.bulk_job_interval_seconds * 2},
            },
            # The IMAP bounce mailbox, when one is configured (worker/bounce_tasks.py).
            "poll-bounce-mailbox": {
                "task": "course.poll_bounces",
                "schedule": settings.bounce_poll_interval_seconds,
                "options": {"expires": settings.bounce_poll_interval_seconds},
            },
            # Bounces and complaints the provider webhooks stored (worker/bounce_tasks.py).
            "apply-webhook-events": {
                "task": "course.apply_webhook_events",
                "schedule": settings.webhook_apply_interval_seconds,
                "options": {"expires": settings.webhook_apply_interval_seconds * 2},
            },
            # Signups never confirmed are deleted after settings.unconfirmed_retention_days.
            "purge-unconfirmed-subscribers": {
                "task": "course.purge_unconfirmed",
                "schedule": 3600.0,
                "options": {"expires": 1800.0},
            },
        },
        "beat_schedule_filename": str(settings.var_dir / "celerybeat-schedule"),
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }
