"""The signup queue: the web request records a signup and nothing else; a worker handles it.

Why: a signup used to do different work for a new, a pending, an enrolled and a bounced address
(an insert here, a mail there, nothing for a bounce), and that showed in the answer's timing (13 ms
for a bounced address against 22 ms for a new one). Now every signup costs the request the same
one INSERT into signup_requests, whatever the address's state, and the worker does the rest.

1. queue_signup (web): insert the signup as typed, after validation and the per-IP limit; on
   PostgreSQL count_and_queue does both in one statement (the per-IP count, the previous window's
   count, and the INSERT only when the sliding count allows it and the signup is valid).
2. handle_signups (worker, before each dispatch): claim unhandled rows (SKIP LOCKED, so several
   workers take disjoint ones); on PostgreSQL, handle the batch's new addresses together, in a
   fixed handful of statements (_handle_new_addresses: sign_up's steps for an address nobody had);
   run subscriptions.sign_up on each of the rest in a savepoint (a unique-index race with another
   worker is retried once: by then the other row is visible), record the confirmation row the
   signup caused, and mark it handled.
3. signup_of (confirm page): the signup a confirmation link was sent for, whose name and time zone
   the confirmation applies.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Integer, String, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from course.audience.schedule import parse_timezone
from course.audience.subscriptions import SignupDetails, SignupOutcome, sign_up
from course.ledger import add_account_mails
from course.audience.events import record_events
from course.models import Course, EnrollmentStatus, RateLimitHit, SignupRequest, SubscriberEventKind, SubscriberStatus, UTCDateTime
from course.ratelimit import (
    RateLimit,
    canonical_address,
    previous_window_weight,
    rate_limit_key,
    sliding_count,
    window_start,
)
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


def queue_signup(session: Session, course_id: int, details: SignupDetails, *, now: datetime, source: str = "form") -> None:
    """The only database work a signup request does beyond its per-IP count: one INSERT. `source`:
    form or api (kept on the subscriber it makes)."""
    session.execute(
        insert(SignupRequest).values(
            course_id=course_id, email=details.email, name=details.name, timezone=details.timezone, requested_at=now,
            source=source,
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
            ["course_id", "email", "name", "timezone", "requested_at", "source"],
            select(
                bindparam("course_id", type_=Integer),
                bindparam("email", type_=String),
                bindparam("name", type_=String),
                bindparam("timezone", type_=String),
                bindparam("requested_at", type_=UTCDateTime),
                bindparam("source", type_=String),
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
    source: str = "form",
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
                "source": source,
            },
        ).scalar_one()
    )


def handle_signups(
    sessions: sessionmaker[Session], *, limits: SignupLimits, now: datetime, limits_now: datetime | None = None
) -> Counter[SignupOutcome]:
    """Handle up to BATCH_SIZE queued signups in one transaction; returns how many ended how.
    `now` is the course calendar (subscribers, enrollments, the confirmation's due time);
    `limits_now` the real time the per-address limit and the hourly cap count in (default: now)."""
    limits_now = limits_now or now
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
        rest = claimed
        if claimed and session.get_bind().dialect.name == "postgresql":
            rest = _handle_new_addresses(
                session, claimed, limits=limits, now=now, limits_now=limits_now, outcomes=outcomes
            )
        for request in rest:
            outcomes[_handle(session, request, limits=limits, now=now, limits_now=limits_now)] += 1
    if outcomes[SignupOutcome.CAPPED]:
        log.warning(
            "%d signups got no confirmation mail: the cap of %d confirmation mails an hour was reached "
            "(COURSE_CONFIRMATION_MAILS_PER_HOUR)",
            outcomes[SignupOutcome.CAPPED], limits.confirmations_per_hour.limit,
        )
    return outcomes


def _handle_new_addresses(
    session: Session,
    claimed: list[SignupRequest],
    *,
    limits: SignupLimits,
    now: datetime,
    limits_now: datetime,
    outcomes: Counter[SignupOutcome],
) -> list[SignupRequest]:
    """The common case of a batch, set-based (PostgreSQL): signups of addresses nobody had, each
    the only one of its address (and of its canonical address) in the batch. For them sign_up's
    steps are known in advance (a new pending subscriber, no enrollment, not bounced), so the
    whole group costs a fixed handful of statements instead of ~15 each:
    1. one INSERT of every candidate address as a pending subscriber (ON CONFLICT DO NOTHING);
       the rows it returns are the new addresses; the others go back to the caller;
    2. the per-address limit for them (distinct keys: one upsert and one read of the previous
       window for all) and the site-wide cap (one upsert of all their hits, one read), decided in
       order of the queue exactly as take_rate_limit decides one hit at a time;
    3. one INSERT of their pending enrollments, one of their confirmation rows (course.ledger).
    Returns the signups left for sign_up one at a time: known addresses, repeated addresses,
    signups of a course that went away, and any that cannot be handled (e.g. a time zone since
    removed from the system's database), which sign_up fails one by one."""
    courses = {course_id: session.get(Course, course_id) for course_id in {request.course_id for request in claimed}}
    keys = {request.id: rate_limit_key(limits.secret, canonical_address(request.email)) for request in claimed}
    per_email = Counter(request.email.lower() for request in claimed)
    per_key = Counter(keys.values())
    zones = {request.id: _zone_key(request.timezone) for request in claimed}
    candidates = [
        request for request in claimed
        if courses[request.course_id] is not None and zones[request.id] is not None
        and per_email[request.email.lower()] == 1 and per_key[keys[request.id]] == 1
    ]
    if not candidates:
        return claimed
    inserted = session.execute(
        text(
            "INSERT INTO subscribers (email, name, timezone, status, created_at, language, source) "
            "SELECT e, '', z, :status, :now, l, s FROM unnest(CAST(:emails AS varchar[]), CAST(:zones AS varchar[]), "
            "CAST(:languages AS varchar[]), CAST(:sources AS varchar[])) AS t(e, z, l, s) "
            "ON CONFLICT DO NOTHING RETURNING id, email"
        ),
        {"status": str(SubscriberStatus.PENDING), "now": now, "emails": [request.email for request in candidates],
         "zones": [zones[request.id] for request in candidates],
         "languages": [courses[request.course_id].language for request in candidates],  # type: ignore[union-attr]
         "sources": [request.source or "form" for request in candidates]},
    ).all()
    new_ids = {email.lower(): subscriber_id for subscriber_id, email in inserted}
    fresh = [request for request in candidates if request.email.lower() in new_ids]
    if not fresh:
        return claimed
    within_limit = _take_each_once(session, limits.per_address, [keys[request.id] for request in fresh], now=limits_now)
    limited = [request for request, allowed in zip(fresh, within_limit, strict=True) if not allowed]
    passing = [request for request, allowed in zip(fresh, within_limit, strict=True) if allowed]
    within_cap = _take_many(session, limits.confirmations_per_hour, rate_limit_key(limits.secret, "all"),
                            len(passing), now=limits_now)
    capped = [request for request, allowed in zip(passing, within_cap, strict=True) if not allowed]
    confirming = [request for request, allowed in zip(passing, within_cap, strict=True) if allowed]
    enrollments: dict[int, int] = {}
    if confirming:
        rows = session.execute(
            text(
                "INSERT INTO enrollments (subscriber_id, course_id, status, enrolled_at) "
                "SELECT s, c, :status, :now FROM unnest(CAST(:subscribers AS bigint[]), CAST(:courses AS bigint[])) AS t(s, c) "
                "RETURNING id, subscriber_id"
            ),
            {"status": str(EnrollmentStatus.PENDING), "now": now,
             "subscribers": [new_ids[request.email.lower()] for request in confirming],
             "courses": [request.course_id for request in confirming]},
        ).all()
        enrollments = {subscriber_id: enrollment_id for enrollment_id, subscriber_id in rows}
    pairs = [(new_ids[request.email.lower()], enrollments[new_ids[request.email.lower()]]) for request in confirming]
    deliveries = add_account_mails(session, pairs, template="confirm", now=now)
    for course_id in sorted({request.course_id for request in confirming}):
        signed_up = [new_ids[request.email.lower()] for request in confirming if request.course_id == course_id]
        record_events(session, signed_up, SubscriberEventKind.SIGNED_UP, now=now, detail={"course_id": course_id})
    for request in confirming:
        request.confirm_delivery_id = deliveries[enrollments[new_ids[request.email.lower()]]]
    for group, outcome in ((limited, SignupOutcome.ADDRESS_LIMITED), (capped, SignupOutcome.CAPPED),
                           (confirming, SignupOutcome.CONFIRMATION_QUEUED)):
        for request in group:
            request.handled_at = now
        if group:
            outcomes[outcome] += len(group)
    handled = {request.id for request in fresh}
    return [request for request in claimed if request.id not in handled]


def _zone_key(name: str) -> str | None:
    try:
        return parse_timezone(name).key
    except ValueError:
        return None  # left to sign_up, which fails it and logs why


def _take_each_once(session: Session, rule: RateLimit, keys: list[str], *, now: datetime) -> list[bool]:
    """take_rate_limit(rule, key) for each of `keys` (all distinct), in two statements."""
    current_start = window_start(now, rule.window)
    current = dict(session.execute(
        text(
            "INSERT INTO rate_limit_hits (scope, key, window_start, hits) "
            "SELECT :scope, k, :start, 1 FROM unnest(CAST(:keys AS varchar[])) AS t(k) "
            "ON CONFLICT (scope, key, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1 RETURNING key, hits"
        ),
        {"scope": rule.scope, "start": current_start, "keys": keys},
    ).all())
    previous = dict(session.execute(
        text("SELECT key, hits FROM rate_limit_hits WHERE scope = :scope AND window_start = :start "
             "AND key = ANY(CAST(:keys AS varchar[]))"),
        {"scope": rule.scope, "start": current_start - rule.window, "keys": keys},
    ).all())
    return [
        sliding_count(current[key], previous.get(key, 0), now=now, current_start=current_start, window=rule.window)
        <= rule.limit
        for key in keys
    ]


def _take_many(session: Session, rule: RateLimit, key: str, count: int, *, now: datetime) -> list[bool]:
    """take_rate_limit(rule, key) `count` times in a row, in two statements: the i-th hit is
    allowed when the count with hits 1..i in it is within the limit."""
    if count == 0:
        return []
    current_start = window_start(now, rule.window)
    after = session.execute(
        text(
            "INSERT INTO rate_limit_hits (scope, key, window_start, hits) VALUES (:scope, :key, :start, :count) "
            "ON CONFLICT (scope, key, window_start) DO UPDATE SET hits = rate_limit_hits.hits + :count RETURNING hits"
        ),
        {"scope": rule.scope, "key": key, "start": current_start, "count": count},
    ).scalar_one()
    previous = session.execute(
        text("SELECT hits FROM rate_limit_hits WHERE scope = :scope AND key = :key AND window_start = :start"),
        {"scope": rule.scope, "key": key, "start": current_start - rule.window},
    ).scalar() or 0
    before = after - count
    return [
        sliding_count(before + i, previous, now=now, current_start=current_start, window=rule.window) <= rule.limit
        for i in range(1, count + 1)
    ]


def _handle(
    session: Session, request: SignupRequest, *, limits: SignupLimits, now: datetime, limits_now: datetime
) -> SignupOutcome:
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
                    limits_now=limits_now,
                    address_limit=limits.per_address,
                    address_key=rate_limit_key(limits.secret, canonical_address(details.email)),
                    confirmation_cap=limits.confirmations_per_hour,
                    cap_key=rate_limit_key(limits.secret, "all"),
                    source=request.source or "form",
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
