"""The signup steps the course pages and the JSON API share: count the attempt against the per-IP
limit, spend the proof of work when the site asks for one, and queue the signup
(course.audience.signup_requests): the request does the same database work whatever the address's
state, and a worker does the rest. On PostgreSQL without a proof of work (the default) the count
and the INSERT are one statement in autocommit: one round trip per signup. Otherwise all of them
run in the one transaction the handler opens, so a signup request costs one commit."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from sqlalchemy.orm import Session

from course.audience.signup_requests import count_and_queue, queue_signup
from course.audience.subscriptions import SignupDetails
from course.web.proof_of_work import CHALLENGE_LIFETIME, proof_of_work_from_settings
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit
from course.i18n import N_
from course.web.site import PageError, Site


def client_address(request: Request) -> str:
    # Behind a proxy listed in COURSE_TRUSTED_PROXIES the app (web/app.py) has already put the
    # real client here; otherwise X-Forwarded-For is ignored and this is the connection's peer.
    return request.client.host if request.client else "unknown"


def _ip_rule(site: Site) -> RateLimit:
    settings = site.settings
    return RateLimit("signup-ip", settings.signup_limit_per_ip, timedelta(seconds=settings.rate_limit_window_seconds))


def ip_limit_allows(session: Session, site: Site, request: Request) -> bool:
    """Count this signup attempt against the per-IP limit. The caller runs it first in the signup's
    transaction and commits it whatever the outcome, so rejected and invalid attempts count too
    (over the limit it may roll back: the count is over the limit already)."""
    key = rate_limit_key(site.settings.secret_key, client_address(request))
    return take_rate_limit(session, _ip_rule(site), key, now=site.wall_now())


def signs_up_in_one_statement(site: Site) -> bool:
    """True on PostgreSQL when no proof of work is asked for (the default): then a signup request
    is one statement in autocommit (count_and_queue_in_one). With a proof of work to spend, or on
    SQLite, the handler runs the steps in one transaction instead (ip_limit_allows,
    proof_of_work_passes, register)."""
    return site.autocommit is not None and proof_of_work_from_settings(site.settings) is None


def count_and_queue_in_one(
    site: Site, request: Request, course_id: int, details: SignupDetails | None, *, source: str = "form"
) -> bool:
    """The whole signup request's database work as one statement and one round trip: the per-IP
    count and, when the limit allows it and `details` is a valid signup (None: invalid, or the
    honeypot), the INSERT into the signup queue. The count is committed whatever the outcome, so
    rejected and invalid attempts count too. Returns whether the per-IP limit allowed it."""
    assert site.autocommit is not None
    key = rate_limit_key(site.settings.secret_key, client_address(request))
    with site.autocommit.connect() as connection:
        return count_and_queue(
            connection, ip_limit=_ip_rule(site), ip_key=key, course_id=course_id, details=details, now=site.wall_now(),
            source=source,
        )


def too_many_signups(site: Site) -> PageError:
    minutes = max(1, site.settings.rate_limit_window_seconds // 60)
    return PageError(
        429,
        N_("Too many signups"),
        N_("We have had a lot of signups from your network just now. Please try again in %(minutes)s minutes."),
        values={"minutes": minutes},
        retry_after=site.settings.rate_limit_window_seconds,
    )


def register(session: Session, site: Site, course_id: int, details: SignupDetails, *, source: str = "form") -> None:
    """Queue the signup, in the caller's transaction: one INSERT, for a new, pending, enrolled or
    bounced address alike. The worker decides what, if anything, to send; whoever signs up sees the
    same answer, as fast."""
    queue_signup(session, course_id, details, now=site.wall_now(), source=source)


def proof_of_work_challenge(site: Site) -> dict[str, object] | None:
    """A fresh challenge for a signup form, or None when the site asks for none (the default)."""
    work = proof_of_work_from_settings(site.settings)
    return work.challenge(now=site.wall_now()) if work is not None else None


def proof_of_work_passes(session: Session, site: Site, answer: str) -> bool:
    """True when the site asks for no proof of work (no statement then), or `answer` solves one of
    our challenges that has not been spent: each solution buys one signup (spent in the rate-limit
    table, in the caller's transaction, keyed by an HMAC of the challenge, for longer than a
    challenge lives)."""
    work = proof_of_work_from_settings(site.settings)
    if work is None:
        return True
    challenge = work.verify(answer, now=site.wall_now())
    if challenge is None:
        return False
    spent = RateLimit("pow-spent", 1, 2 * CHALLENGE_LIFETIME)
    return take_rate_limit(session, spent, rate_limit_key(site.settings.secret_key, challenge), now=site.wall_now())
