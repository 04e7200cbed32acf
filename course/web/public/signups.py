"""The signup steps the course pages and the JSON API share: count the attempt against the per-IP
limit, and register the signup (course.audience.subscriptions.sign_up). Both run in the one
transaction the handler opens, so a signup costs one commit."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from sqlalchemy.orm import Session

from course.audience.subscriptions import SignupDetails, sign_up
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit
from course.web.site import PageError, Site


def client_address(request: Request) -> str:
    # Behind a proxy, uvicorn's proxy_headers (on in `course web`) has already put the real
    # client here for trusted proxies; an untrusted X-Forwarded-For is ignored.
    return request.client.host if request.client else "unknown"


def ip_limit_allows(session: Session, site: Site, request: Request) -> bool:
    """Count this signup attempt against the per-IP limit. The caller runs it first in the signup's
    transaction and commits it whatever the outcome, so rejected and invalid attempts count too."""
    settings = site.settings
    rule = RateLimit("signup-ip", settings.signup_limit_per_ip, timedelta(seconds=settings.rate_limit_window_seconds))
    return take_rate_limit(session, rule, rate_limit_key(settings.secret_key, client_address(request)), now=site.now())


def too_many_signups(site: Site) -> PageError:
    minutes = max(1, site.settings.rate_limit_window_seconds // 60)
    return PageError(
        429,
        "Too many signups",
        f"We have had a lot of signups from your network just now. Please try again in {minutes} minutes.",
        retry_after=site.settings.rate_limit_window_seconds,
    )


def register(session: Session, site: Site, course_id: int, details: SignupDetails) -> None:
    """Sign up, in the caller's transaction. The outcome is deliberately dropped: whoever signs up
    sees the same answer whether or not the address is known."""
    settings = site.settings
    address_rule = RateLimit(
        "signup-address", settings.signup_limit_per_address, timedelta(seconds=settings.rate_limit_window_seconds)
    )
    sign_up(
        session,
        course_id,
        details,
        now=site.now(),
        address_limit=address_rule,
        address_key=rate_limit_key(settings.secret_key, details.email),
    )
