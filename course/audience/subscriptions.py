"""What the subscriber web does to the database: sign up (double opt-in), confirm, change
preferences, purge what was never confirmed. Plain functions over a Session and `now`, built on
course.audience.enrollment (delivery rows are written by course.ledger, the signup rate limits are
counted by course.ratelimit), so the web pages, the JSON API and the worker share one set of rules.

Double opt-in, step by step:

1. A signup is queued as it was typed (signup_requests); a worker stores the address as a pending
   subscriber with a pending enrollment (no lesson rows) and puts a "confirm" transactional row in
   the ledger, due now, ahead of bulk mail.
2. An address already enrolled in the course gets an "already_enrolled" mail instead; the person
   signing up sees the same page either way, so the form never tells who is subscribed.
3. Confirming (signed, expiring link) activates the subscriber, with the name and time zone of the
   signup that link was sent for, and the enrollment through course.enrollment.enroll, which
   writes the lesson rows with lesson 1 due at once.
4. Pending subscribers who never confirm are deleted after unconfirmed_retention_days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.audience.enrollment import (
    SubscriptionError,
    accepted_name,
    enroll,
    find_subscriber,
    name_to_greet,
    normalize_email,
    resume,
    schedule_lessons,
)
from course.audience.events import record_event
from course.audience.schedule import next_send_slot, parse_timezone
from course.ledger import add_account_mail
from course.models import (
    SUPPRESSED_SUBSCRIBER_STATUSES,
    Course,
    Delivery,
    Enrollment,
    EnrollmentStatus,
    SignupRequest,
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
)
from course.ratelimit import RateLimit, take_rate_limit

# Enrollments the subscriber has already confirmed: signing up again changes nothing.
CONFIRMED_ENROLLMENT_STATES = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.COMPLETED)


# --- signup and confirmation -----------------------------------------------------------------


class SignupOutcome(StrEnum):
    """What a signup did. Never shown to the person signing up: they see one page for all."""

    CONFIRMATION_QUEUED = "confirmation_queued"
    ALREADY_ENROLLED_QUEUED = "already_enrolled_queued"
    ADDRESS_LIMITED = "address_limited"  # too many mails to this address lately: nothing sent
    SUPPRESSED = "suppressed"  # the address bounced: nothing sent
    CAPPED = "capped"  # the site-wide cap of confirmation mails per hour was reached: nothing sent
    FAILED = "failed"  # could not be handled (logged): nothing sent


@dataclass(frozen=True)
class SignupDetails:
    email: str
    name: str
    timezone: str


def check_signup(email: str, name: str, timezone_name: str) -> tuple[SignupDetails | None, dict[str, str]]:
    """Validate a signup's fields: the cleaned values, or a message per bad field."""
    errors: dict[str, str] = {}
    address = zone_key = ""
    try:
        address = normalize_email(email)
    except ValueError:
        errors["email"] = "Please enter a valid email address, like name@example.com."
    try:
        zone_key = parse_timezone(timezone_name).key
    except ValueError:
        errors["timezone"] = "Please choose a time zone from the list, like Europe/Berlin."
    try:
        first_name = accepted_name(name)
    except SubscriptionError as exc:
        errors["name"] = str(exc)
    if errors:
        return None, errors
    return SignupDetails(email=address, name=first_name, timezone=zone_key), {}


def queue_account_mail(session: Session, enrollment: Enrollment, template: str, *, now: datetime) -> Delivery:
    """Account mail (confirm, already_enrolled) for this enrollment's subscriber, due now and
    ahead of bulk mail."""
    return add_account_mail(
        session, subscriber_id=enrollment.subscriber_id, enrollment_id=enrollment.id, template=template, now=now
    )


def find_enrollment(session: Session, subscriber_id: int, course_id: int) -> Enrollment | None:
    return session.scalars(
        select(Enrollment).where(Enrollment.subscriber_id == subscriber_id, Enrollment.course_id == course_id)
    ).first()


def sign_up(
    session: Session,
    course: Course,
    details: SignupDetails,
    *,
    now: datetime,
    address_limit: RateLimit,
    address_key: str,
    confirmation_cap: RateLimit | None = None,
    cap_key: str = "",
    limits_now: datetime | None = None,
    source: str = "form",
) -> tuple[SignupOutcome, Delivery | None]:
    """Handle one signup (a worker does, from the queue the web fills: course.audience.signup_requests).
    Returns what happened and the confirmation row it queued, if any.

    1. A new address becomes a pending subscriber with no name (names are shown only after
       confirmation) in one race-free insert; a known one is left exactly as it is: a pending
       signup is never overwritten, each confirmation link confirms its own signup's details.
    2. A bounced address gets nothing: mailing it again would hurt the sender's reputation.
    3. Every mail to one canonical address counts against address_limit, so the form cannot be
       used to flood someone's inbox; over the limit, nothing is sent.
    4. Enrolled already (active, paused or done): queue "already_enrolled" with a preferences link.
    5. Otherwise, within the site-wide cap of confirmation mails per hour (confirmation_cap), the
       enrollment is (re)set to pending and "confirm" is queued.
    The limits count in `limits_now` (real time; default `now`), the rest is on the course calendar."""
    limits_now = limits_now or now
    subscriber = insert_pending_subscriber(
        session, details.email, timezone_name=details.timezone, now=now, language=course.language, source=source
    )
    if subscriber.status in SUPPRESSED_SUBSCRIBER_STATUSES:
        return SignupOutcome.SUPPRESSED, None
    if not take_rate_limit(session, address_limit, address_key, now=limits_now):
        return SignupOutcome.ADDRESS_LIMITED, None
    enrollment = find_enrollment(session, subscriber.id, course.id)
    if enrollment is not None and enrollment.status in CONFIRMED_ENROLLMENT_STATES:
        return SignupOutcome.ALREADY_ENROLLED_QUEUED, queue_account_mail(session, enrollment, "already_enrolled", now=now)
    if confirmation_cap is not None and not take_rate_limit(session, confirmation_cap, cap_key, now=limits_now):
        return SignupOutcome.CAPPED, None
    enrollment = enroll(session, subscriber, course, now=now, status=EnrollmentStatus.PENDING)
    record_event(session, subscriber.id, SubscriberEventKind.SIGNED_UP, now=now, detail={"course_id": course.id})
    return SignupOutcome.CONFIRMATION_QUEUED, queue_account_mail(session, enrollment, "confirm", now=now)


def insert_pending_subscriber(
    session: Session, email: str, *, timezone_name: str, now: datetime, language: str | None = None, source: str | None = None
) -> Subscriber:
    """The subscriber with this address, inserted as pending (no name) if there is none, with the
    course's language and where the signup came from (form, api; a known one keeps theirs): one
    INSERT … ON CONFLICT DO NOTHING, so two signups of one new address at once both find the one
    row instead of one of them failing on the unique index."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(Subscriber)
        .values(
            email=email, name="", timezone=parse_timezone(timezone_name).key, status=SubscriberStatus.PENDING, created_at=now,
            language=language, source=source,
        )
        .on_conflict_do_nothing()
    )
    subscriber = find_subscriber(session, email)
    assert subscriber is not None, "inserted or already there"
    return subscriber


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    UNSUBSCRIBED_SINCE = "unsubscribed_since"  # left after this link was sent: the link does not undo that
    NOT_FOUND = "not_found"  # purged, or never existed


@dataclass(frozen=True)
class Confirmation:
    outcome: ConfirmOutcome
    enrollment: Enrollment | None = None


def confirm(
    session: Session, subscriber_id: int, course_id: int, *, now: datetime, signup: SignupRequest | None = None
) -> Confirmation:
    """Activate a pending enrollment (and its subscriber). Only a pending enrollment is activated:
    an old confirmation link must not bring back someone who unsubscribed after using it.

    `signup` is the signup the link was sent for (course.audience.signup_requests.signup_of): a
    subscriber confirmed for the first time takes its name and time zone, which nobody saw or
    used before; an address confirmed earlier keeps the settings its owner chose."""
    enrollment = find_enrollment(session, subscriber_id, course_id)
    if enrollment is None:
        return Confirmation(ConfirmOutcome.NOT_FOUND)
    if enrollment.status == EnrollmentStatus.UNSUBSCRIBED:
        return Confirmation(ConfirmOutcome.UNSUBSCRIBED_SINCE, enrollment)
    if enrollment.status != EnrollmentStatus.PENDING:
        return Confirmation(ConfirmOutcome.ALREADY_CONFIRMED, enrollment)
    subscriber = enrollment.subscriber
    if subscriber.status in SUPPRESSED_SUBSCRIBER_STATUSES:
        return Confirmation(ConfirmOutcome.NOT_FOUND)
    if signup is not None and subscriber.confirmed_at is None:
        subscriber.name = name_to_greet(signup.name)  # a signup queued before names were checked: none
        subscriber.timezone = parse_timezone(signup.timezone).key
    # Confirming is a fresh opt-in, also for someone who once unsubscribed from everything.
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    enroll(session, subscriber, enrollment.course, now=now, status=EnrollmentStatus.ACTIVE)
    record_event(session, subscriber.id, SubscriberEventKind.CONFIRMED, now=now, detail={"course_id": course_id})
    return Confirmation(ConfirmOutcome.CONFIRMED, enrollment)


# --- preferences -----------------------------------------------------------------------------


def next_slot(enrollment: Enrollment, *, now: datetime) -> datetime:
    """The enrollment's next local send time at or after now."""
    course = enrollment.course
    return next_send_slot(
        now,
        zone=parse_timezone(enrollment.subscriber.timezone),
        send_time=enrollment.send_time or course.send_time,
        weekdays=course.weekdays,
    )


def _receiving(enrollment: Enrollment) -> bool:
    """Lessons flow only to an active enrollment of an active subscriber. A paused enrollment keeps
    its rows held (resume() schedules them with the new values); a bounced or unsubscribed
    address must not get rows back that were cancelled for it."""
    return enrollment.status == EnrollmentStatus.ACTIVE and enrollment.subscriber.status == SubscriberStatus.ACTIVE


def _reschedule(session: Session, enrollment: Enrollment, *, now: datetime) -> None:
    if _receiving(enrollment):
        schedule_lessons(session, enrollment, first_due=next_slot(enrollment, now=now), now=now)


def change_send_time(session: Session, enrollment: Enrollment, send_time: time | None, *, now: datetime) -> None:
    """None goes back to the course's send time."""
    enrollment.send_time = send_time
    record_event(
        session, enrollment.subscriber_id, SubscriberEventKind.PREFERENCES_CHANGED, now=now,
        detail={"course_id": enrollment.course_id, "send_time": send_time.strftime("%H:%M") if send_time else None},
    )  # fmt: skip
    _reschedule(session, enrollment, now=now)


def change_timezone(session: Session, subscriber: Subscriber, timezone_name: str, *, now: datetime) -> None:
    """Raises UnknownTimeZone for anything but an IANA name."""
    subscriber.timezone = parse_timezone(timezone_name).key
    record_event(session, subscriber.id, SubscriberEventKind.PREFERENCES_CHANGED, now=now, detail={"timezone": subscriber.timezone})
    for enrollment in subscriber.enrollments:
        _reschedule(session, enrollment, now=now)


def send_next_now(session: Session, enrollment: Enrollment, *, now: datetime) -> bool:
    """The next lesson due now, the rest on the cadence from there (a paused course resumes).
    False when the enrollment is not running, so there is nothing to send."""
    if enrollment.subscriber.status != SubscriberStatus.ACTIVE:
        return False
    if enrollment.status == EnrollmentStatus.PAUSED:
        resume(session, enrollment, now=now, immediately=True)
        return True
    if _receiving(enrollment):
        return schedule_lessons(session, enrollment, first_due=now, now=now) > 0
    return False


# --- housekeeping ----------------------------------------------------------------------------


def purge_unconfirmed(session: Session, *, now: datetime, older_than: timedelta) -> int:
    """Delete subscribers who signed up more than `older_than` ago and never confirmed, and the
    never-confirmed enrollments of subscribers who are otherwise active (a second course they asked
    for and did not confirm). Their ledger rows go with them (ON DELETE CASCADE). Returns how many
    subscribers were deleted."""
    cutoff = now - older_than
    session.execute(
        delete(Enrollment).where(Enrollment.status == EnrollmentStatus.PENDING, Enrollment.enrolled_at < cutoff)
    )
    return session.execute(
        delete(Subscriber).where(Subscriber.status == SubscriberStatus.PENDING, Subscriber.created_at < cutoff)
    ).rowcount
