"""The signup steps the course pages and the JSON API share: count the attempt against the per-IP
limit, and register the signup (course.audience.subscriptions.sign_up)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request

from course.audience.subscriptions import SignupDetails, sign_up
from course.models import Course
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit
from course.web.site import PageError, Site


def client_address(request: Request) -> str:
    # Behind a proxy, uvicorn's proxy_headers (on in `course web`) has already put the real
    # client here for trusted proxies; an untrusted X-Forwarded-For is ignored.
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
    """Sign up in one transaction. The outcome is deliberately dropped: whoever signs up sees the
    same answer whether or not the address is known."""
    settings = site.settings
    address_rule = RateLimit(
        "signup-address", settings.signup_limit_per_address, timedelta(seconds=settings.rate_limit_window_seconds)
    )
    with site.sessions.begin() as session:
        course = session.get(Course, course_id)
        if course is None:  # deleted a moment ago
            raise PageError(404, "Course not found", "This course is no longer offered.")
        sign_up(
            session,
            course,
            details,
            now=site.now(),
            address_limit=address_rule,
            address_key=rate_limit_key(settings.secret_key, details.email),
        )
