"""Housekeeping tasks run by beat: thin shells around course.audience.subscriptions (unconfirmed
sign-ups) and course.ratelimit (expired rate-limit windows)."""

from __future__ import annotations

import logging
from datetime import timedelta

from course.clock import get_clock, get_wall_clock
from course.db import session_factory
from course.settings import get_settings
from course.audience.signup_requests import purge_signups
from course.audience.subscriptions import purge_unconfirmed
from course.ratelimit import purge_rate_limits
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name="course.purge_unconfirmed", ignore_result=True)
def purge_unconfirmed_subscribers() -> dict[str, int]:
    """Delete signups never confirmed within unconfirmed_retention_days (their enrollments and
    confirmation rows go with them), and rate-limit counters from windows long closed."""
    settings = get_settings()
    now = get_clock(settings).now()
    # The signup queue and the rate-limit windows are stamped in real time (site.wall_now), the
    # subscribers on the course calendar: each is purged on its own clock.
    wall_now = get_wall_clock().now()
    with session_factory(settings).begin() as session:
        retention = timedelta(days=settings.unconfirmed_retention_days)
        purged = purge_unconfirmed(session, now=now, older_than=retention)
        purge_signups(session, before=wall_now - retention)
        # Two windows of the longest limit (the hourly confirmation cap included): a sliding window
        # reads the previous one.
        longest = max(settings.rate_limit_window_seconds, 3600)
        counters = purge_rate_limits(session, before=wall_now - timedelta(seconds=2 * longest))
    if purged:
        log.info("purged %d unconfirmed subscribers", purged)
    return {"subscribers": purged, "rate_limit_windows": counters}
