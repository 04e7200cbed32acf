"""What the subscriber web does to the database: sign up (double opt-in), confirm, change
preferences, purge what was never confirmed. Plain functions over a Session and `now`, built on
course.audience.enrollment (delivery rows are written by course.ledger, the signup rate limits are
counted by course.ratelimit), so the web pages, the JSON API and the worker share one set of rules.

Double opt-in, step by step:

1. A signup stores the address as a pending subscriber with a pending enrollment (no lesson rows)
   and puts a "confirm" transactional row in the ledger, due now, ahead of bulk mail.
2. An address already enrolled in the course gets an "already_enrolled" mail instead; the person
   signing up sees the same page either way, so the form never tells who is subscribed.
3. Confirming (signed, expiring link) activates the subscriber and the enrollment through
   course.enrollment.enroll, which writes the lesson rows with lesson 1 due at once.
4. Pending subscribers who never confirm are deleted after unconfirmed_retention_days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from course.audience.enrollment import (
    clean_name,
    enroll,
    find_subscriber,
    normalize_email,
    resume,
    schedule_lessons,
)
from course.audience.schedule import next_send_slot, parse_timezone
from course.ledger import add_account_mail
from course.models import (
    Delivery,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
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
    if errors:
        return None, errors
    return SignupDetails(email=address, name=clean_name(name), timezone=zone_key), {}


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
    course_id: int,
    details: SignupDetails,
    *,
    now: datetime,
    address_limit: RateLimit,
    address_key: str,
) -> SignupOutcome:
    """1. A new address becomes a pending subscriber; a pending one takes the details typed last
       (nothing about it was confirmed, so nothing is lost).
    2. A bounced address gets nothing: mailing it again would hurt the sender's reputation.
    3. Every mail to one address counts against address_limit, so the form cannot be used to
       flood someone's inbox; over the limit, nothing is sent.
    4. Enrolled already (active, paused or done): queue "already_enrolled" with a preferences link.
       Otherwise the enrollment is (re)set to pending and "confirm" is queued.

    Statements for a new address: find the address, insert the subscriber, count the address,
    insert the enrollment, insert the confirmation row (5; a known address reads its enrollment
    instead of assuming none). The course is given by id: the caller knows it from its cache, and
    the enrollment's foreign key is what checks it still exists."""
    subscriber = find_subscriber(session, details.email)
    is_new = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(
            email=details.email,
            name=details.name,
            timezone=details.timezone,
            status=SubscriberStatus.PENDING,
            created_at=now,
        )
        session.add(subscriber)
        session.flush()
    elif subscriber.status == SubscriberStatus.PENDING:
        subscriber.name = details.name
        subscriber.timezone = details.timezone
    if subscriber.status == SubscriberStatus.BOUNCED:
        return SignupOutcome.SUPPRESSED
    if not take_rate_limit(session, address_limit, address_key, now=now):
        return SignupOutcome.ADDRESS_LIMITED
    enrollment = None if is_new else find_enrollment(session, subscriber.id, course_id)
    if enrollment is not None and enrollment.status in CONFIRMED_ENROLLMENT_STATES:
        queue_account_mail(session, enrollment, "already_enrolled", now=now)
        return SignupOutcome.ALREADY_ENROLLED_QUEUED
    if enrollment is None:
        # Pending until confirmed: no lesson rows yet (confirm() enrolls through enroll()).
        enrollment = Enrollment(
            subscriber_id=subscriber.id, course_id=course_id, status=EnrollmentStatus.PENDING, enrolled_at=now
        )
        session.add(enrollment)
        session.flush()
    else:
        enrollment.status = EnrollmentStatus.PENDING
    queue_account_mail(session, enrollment, "confirm", now=now)
    return SignupOutcome.CONFIRMATION_QUEUED


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    UNSUBSCRIBED_SINCE = "unsubscribed_since"  # left after this link was sent: the link does not undo that
    NOT_FOUND = "not_found"  # purged, or never existed


@dataclass(frozen=True)
class Confirmation:
    outcome: ConfirmOutcome
    enrollment: Enrollment | None = None


def confirm(session: Session, subscriber_id: int, course_id: int, *, now: datetime) -> Confirmation:
    """Activate a pending enrollment (and its subscriber). Only a pending enrollment is activated:
    an old confirmation link must not bring back someone who unsubscribed after using it."""
    enrollment = find_enrollment(session, subscriber_id, course_id)
    if enrollment is None:
        return Confirmation(ConfirmOutcome.NOT_FOUND)
    if enrollment.status == EnrollmentStatus.UNSUBSCRIBED:
        return Confirmation(ConfirmOutcome.UNSUBSCRIBED_SINCE, enrollment)
    if enrollment.status != EnrollmentStatus.PENDING:
        return Confirmation(ConfirmOutcome.ALREADY_CONFIRMED, enrollment)
    subscriber = enrollment.subscriber
    if subscriber.status == SubscriberStatus.BOUNCED:
        return Confirmation(ConfirmOutcome.NOT_FOUND)
    # Confirming is a fresh opt-in, also for someone who once unsubscribed from everything.
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    enroll(session, subscriber, enrollment.course, now=now, status=EnrollmentStatus.ACTIVE)
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
    _reschedule(session, enrollment, now=now)


def change_timezone(session: Session, subscriber: Subscriber, timezone_name: str, *, now: datetime) -> None:
    """Raises UnknownTimeZone for anything but an IANA name."""
    subscriber.timezone = parse_timezone(timezone_name).key
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
