"""The signup queue: the web request records a signup and nothing else; a worker handles it.

Why: a signup used to do different work for a new, a pending, an enrolled and a bounced address
(an insert here, a mail there, nothing for a bounce), and that showed in the answer's timing (13 ms
for a bounced address against 22 ms for a new one). Now every signup costs the request the same
one INSERT into signup_requests, whatever the address's state, and the worker does the rest.

1. queue_signup (web): insert the signup as typed, after validation and the per-IP limit; on
   PostgreSQL count_and_queue does both in one statement (the per-IP count, the previous window's
   count, and the INSERT only when the sliding count allows it and the signup is valid).
2. handle_signups (worker, before each dispatch): claim unhandled rows (SKIP LOCKED, so several
   workers take disjoint ones), run subscriptions.sign_up on each in a savepoint (a unique-index
   race with another worker is retried once: by then the other row is visible), record the
   confirmation row the signup caused, and mark it handled.
3. signup_of (confirm page): the signup a confirmation link was sent for, whose name and time zone
   the confirmation applies.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Integer, String, bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from course.audience.subscriptions import SignupDetails, SignupOutcome, sign_up
from course.models import Course, RateLimitHit, SignupRequest, UTCDateTime
from course.ratelimit import RateLimit, canonical_address, previous_window_weight, rate_limit_key, window_start
from course.settings import Settings

log = logging.getLogger(__name__)

# Signups handled per call; the dispatcher's beat calls again a few seconds later.
BATCH_SIZE = 500


@dataclass(frozen=True)
class SignupLimits:
    """The limits a worker applies to queued signups (the per-IP one is the web request's)."""

    per_address: RateLimit  # mails to one canonical address per window
    confirmations_per_hour: RateLimit  # confirmation mails to anyone, site-wide
    secret: str  # keys the counters (an HMAC, not the address, is stored)

    @classmethod
    def from_settings(cls, settings: Settings) -> SignupLimits:
        return cls(
            per_address=RateLimit(
                "signup-address", settings.signup_limit_per_address, timedelta(seconds=settings.rate_limit_window_seconds)
            ),
            confirmations_per_hour=RateLimit("confirm-all", settings.confirmation_mails_per_hour, timedelta(hours=1)),
            secret=settings.secret_key,
        )


def queue_signup(session: Session, course_id: int, details: SignupDetails, *, now: datetime) -> None:
    """The only database work a signup request does beyond its per-IP count: one INSERT."""
    session.execute(
        insert(SignupRequest).values(
            course_id=course_id, email=details.email, name=details.name, timezone=details.timezone, requested_at=now
        )
    )


def _count_and_queue_statement() -> Any:
    """One PostgreSQL statement (data-modifying CTEs), built and compiled once per process:
    1. `hit`: the per-IP upsert of the current window's counter, returning its count;
    2. `allowed`: that count plus the previous window's, weighted by its share still inside the
       sliding window (ratelimit.sliding_count), within the limit;
    3. `queued`: the signup row, inserted only when allowed and :enqueue (a valid signup, not the
       honeypot). Every valid signup runs the same statement whatever the address's state."""
    scope, key = bindparam("ip_scope", type_=String), bindparam("ip_key", type_=String)
    hit = (
        postgresql.insert(RateLimitHit)
        .values(scope=scope, key=key, window_start=bindparam("current_start", type_=UTCDateTime), hits=1)
        .on_conflict_do_update(
            index_elements=["scope", "key", "window_start"], set_={"hits": RateLimitHit.hits + 1}
        )
        .returning(RateLimitHit.hits)
        .cte("hit")
    )
    previous = (
        select(RateLimitHit.hits)
        .where(
            RateLimitHit.scope == scope,
            RateLimitHit.key == key,
            RateLimitHit.window_start == bindparam("previous_start", type_=UTCDateTime),
        )
        .scalar_subquery()
    )
    sliding = hit.c.hits + func.coalesce(previous, 0) * bindparam("previous_weight", type_=Float)
    allowed = select((sliding <= bindparam("limit", type_=Integer)).label("ok")).select_from(hit).cte("allowed")
    queued = (
        insert(SignupRequest)
        .from_select(
            ["course_id", "email", "name", "timezone", "requested_at"],
            select(
                bindparam("course_id", type_=Integer),
                bindparam("email", type_=String),
                bindparam("name", type_=String),
                bindparam("timezone", type_=String),
                bindparam("requested_at", type_=UTCDateTime),
            ).where(allowed.c.ok, bindparam("enqueue", type_=Boolean)),
        )
        .returning(SignupRequest.id)
        .cte("queued")
    )
    return select(allowed.c.ok).add_cte(queued)


_COUNT_AND_QUEUE = _count_and_queue_statement()


def count_and_queue(
    connection: Connection,
    *,
    ip_limit: RateLimit,
    ip_key: str,
    course_id: int,
    details: SignupDetails | None,
    now: datetime,
) -> bool:
    """A signup request's whole database work on PostgreSQL, in one statement (on a connection in
    autocommit, it is its own transaction: one round trip): count the attempt against the per-IP
    limit and, when that allows it and `details` is a valid signup, queue it. Returns whether the
    per-IP limit allowed the attempt. Same result as take_rate_limit followed by queue_signup."""
    current_start = window_start(now, ip_limit.window)
    return bool(
        connection.execute(
            _COUNT_AND_QUEUE,
            {
                "ip_scope": ip_limit.scope,
                "ip_key": ip_key,
                "current_start": current_start,
                "previous_start": current_start - ip_limit.window,
                "previous_weight": previous_window_weight(now, current_start, ip_limit.window),
                "limit": ip_limit.limit,
                "enqueue": details is not None,
                "course_id": course_id,
                "email": details.email if details else "",
                "name": details.name if details else "",
                "timezone": details.timezone if details else "",
                "requested_at": now,
            },
        ).scalar_one()
    )


def handle_signups(sessions: sessionmaker[Session], *, limits: SignupLimits, now: datetime) -> Counter[SignupOutcome]:
    """Handle up to BATCH_SIZE queued signups in one transaction; returns how many ended how."""
    outcomes: Counter[SignupOutcome] = Counter()
    with sessions.begin() as session:
        claimed = list(
            session.scalars(
                select(SignupRequest)
                .where(SignupRequest.handled_at.is_(None))
                .order_by(SignupRequest.id)
                .limit(BATCH_SIZE)
                .with_for_update(skip_locked=True)
            )
        )
        for request in claimed:
            outcomes[_handle(session, request, limits=limits, now=now)] += 1
    if outcomes[SignupOutcome.CAPPED]:
        log.warning(
            "%d signups got no confirmation mail: the cap of %d confirmation mails an hour was reached "
            "(COURSE_CONFIRMATION_MAILS_PER_HOUR)",
            outcomes[SignupOutcome.CAPPED], limits.confirmations_per_hour.limit,
        )
    return outcomes


def _handle(session: Session, request: SignupRequest, *, limits: SignupLimits, now: datetime) -> SignupOutcome:
    course = session.get(Course, request.course_id)
    request.handled_at = now
    if course is None:
        return SignupOutcome.SUPPRESSED  # the course went away in between: nothing to confirm
    details = SignupDetails(email=request.email, name=request.name, timezone=request.timezone)
    for attempt in (1, 2):
        try:
            with session.begin_nested():
                outcome, row = sign_up(
                    session,
                    course,
                    details,
                    now=now,
                    address_limit=limits.per_address,
                    address_key=rate_limit_key(limits.secret, canonical_address(details.email)),
                    confirmation_cap=limits.confirmations_per_hour,
                    cap_key=rate_limit_key(limits.secret, "all"),
                )
                if outcome == SignupOutcome.CONFIRMATION_QUEUED and row is not None:
                    request.confirm_delivery_id = row.id
                return outcome
        except IntegrityError:
            # Another worker inserted the same enrollment a moment ago; it is visible now.
            if attempt == 2:
                break
        except Exception:  # noqa: BLE001 - see below
            log.exception("cannot handle signup %d; it is dropped", request.id)
            break
    # One signup that cannot be handled must not stop the queue (and the dispatch after it) for
    # good: it stays marked handled, with no mail, and the error is in the log.
    return SignupOutcome.FAILED


def signup_of(session: Session, confirm_delivery_id: int, *, subscriber_email: str, course_id: int) -> SignupRequest | None:
    """The signup whose confirmation mail was `confirm_delivery_id`, if it is this subscriber's
    signup for this course (a link names only its own signup)."""
    request = session.scalars(
        select(SignupRequest).where(SignupRequest.confirm_delivery_id == confirm_delivery_id)
    ).first()
    if request is None or request.course_id != course_id or request.email.lower() != subscriber_email.lower():
        return None
    return request


def purge_signups(session: Session, *, before: datetime) -> int:
    """Signups older than the retention: their confirmation links have long expired."""
    return session.execute(delete(SignupRequest).where(SignupRequest.requested_at < before)).rowcount
