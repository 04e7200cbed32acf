"""The signup steps the course pages and the JSON API share: count the attempt against the per-IP
limit, and queue the signup (course.audience.signup_requests): the request does the same database
work whatever the address's state, and a worker does the rest."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request

from course.audience.signup_requests import queue_signup
from course.audience.subscriptions import SignupDetails
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit
from course.web.site import PageError, Site


def client_address(request: Request) -> str:
    # Behind a proxy listed in COURSE_TRUSTED_PROXIES the app (web/app.py) has already put the
    # real client here; otherwise X-Forwarded-For is ignored and this is the connection's peer.
    return request.client.host if request.client else "unknown"


def ip_limit_allows(site: Site, request: Request) -> bool:
    """Count this signup attempt against the per-IP limit, in its own transaction, so rejected
    and invalid attempts count too."""
    settings = site.settings
    rule = RateLimit("signup-ip", settings.signup_limit_per_ip, timedelta(seconds=settings.rate_limit_window_seconds))
    with site.sessions.begin() as session:
        return take_rate_limit(
            session, rule, rate_limit_key(settings.secret_key, client_address(request)), now=site.now()
        )


def too_many_signups(site: Site) -> PageError:
    minutes = max(1, site.settings.rate_limit_window_seconds // 60)
    return PageError(
        429,
        "Too many signups",
        f"We have had a lot of signups from your network just now. Please try again in {minutes} minutes.",
        retry_after=site.settings.rate_limit_window_seconds,
    )


def register(site: Site, course_id: int, details: SignupDetails) -> None:
    """Queue the signup: one INSERT, for a new, pending, enrolled or bounced address alike. The
    worker decides what, if anything, to send; whoever signs up sees the same answer, as fast."""
    with site.sessions.begin() as session:
        queue_signup(session, course_id, details, now=site.now())
