"""Subscribers and their enrollments: which lessons each enrollment should get, and when.

Everything that starts, moves or stops a subscriber's lessons goes through here, so the ledger always
says exactly what will be sent: enrolling schedules one delivery row per lesson with its due time;
pausing holds the open rows; resuming and "next lesson now" reschedule them; unsubscribing cancels
them. The decisions (which lessons, which due times) are made here; the rows are written by
course.ledger, the only writer of deliveries. The sender checks the state again at send time, which
covers rows that were already handed to a worker."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Connection, Row, Select, bindparam, case, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from course import counters
from course.ledger import (
    cancel_enrollment_rows,
    cancel_subscriber_rows,
    Cancelling,
    hold_enrollment_rows,
    insert_lesson_rows,
    lesson_rows,
    next_pending_due,
    run_with_cancelling,
    schedule_lesson_rows,
)
from course.models import (
    FINISHED_DELIVERY_STATES,
    IN_FLIGHT_DELIVERY_STATES,
    Counter,
    Course,
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    subscriber_rows,
)
from course.audience.events import record_event
from course.audience.schedule import lesson_due_times, next_send_slot, parse_timezone

MAX_NAME_LENGTH = 200


class SubscriptionError(ValueError):
    """Bad subscriber input: the message is fit to show the person who typed it."""


def normalize_email(raw: str) -> str:
    """A syntactically valid address, domain lower-cased (no DNS look-up: that is the SMTP
    server's job, and it keeps signup fast and testable)."""
    if any(ch in raw for ch in "\r\n"):
        raise SubscriptionError("an email address cannot contain line breaks")
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
        return result.ascii_email or result.normalized
    except EmailNotValidError as exc:
        raise SubscriptionError(f"invalid email address {raw.strip()!r}: {exc}") from exc


# C0 and C1 control characters (CR, LF, ESC, NEL, CSI...) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


# An RFC 2047 encoded word ("=?utf-8?q?…?="): a mail client decodes it in To:, into anything at all
# (CR/LF, another address). The mail code encodes names itself; a name never needs to bring one.
_ENCODED_WORD_START = re.compile(r"=\s*\?")


# Bidirectional controls (the marks, embeddings, overrides and isolates): in a name they only
# reorder the text shown after it, such as a right-to-left override turning what follows around.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

NOT_A_NAME = "Please enter just your first name (no links, addresses or symbols), or leave it empty."


def clean_name(raw: str) -> str:
    """A display name safe for headers and pages: control characters (CR/LF included) become
    spaces, bidirectional controls are removed, white space collapses, what could start an encoded
    word ("=?") loses its "=", length is capped."""
    text = unicodedata.normalize("NFC", _BIDI_CONTROLS.sub("", _CONTROL.sub(" ", raw)))
    text = _ENCODED_WORD_START.sub("?", text)
    return " ".join(text.split())[:MAX_NAME_LENGTH]


# Inside a name: the apostrophes, hyphens and dots of O'Brien, Jean-Luc or J. R., and the zero-width
# (non-)joiners some scripts write names with.
_NAME_MARKS = frozenset("'\u2019-\u2010.\u200c\u200d")
MAX_NAME_WORD_LENGTH = 40

# The words' rule below for an ASCII name (in ASCII the letters are [A-Za-z], the digits [0-9], and
# the marks ' - .): the first word has a letter before any dot; every word is letters, digits,
# apostrophes and hyphens, then perhaps dots. One C-speed match for what every mail's greeting asks.
_ASCII_NAME = re.compile(r"\s*[0-9'-]*[A-Za-z][A-Za-z0-9'-]*\.*(?:\s+[A-Za-z0-9'-]*\.*)*\s*")


def is_a_name(cleaned: str) -> bool:
    """Whether a cleaned name reads as a person's name, to greet someone by: letters (of any
    script), their marks and digits ("Reader 3") in a few words, a name's apostrophes, hyphens and
    dots, and nothing a link, an address or a message is made of ("https://evil.example/claim",
    "ann@example.org", "evil.example", symbols, markup). The first word, the one a greeting uses,
    has a letter. A dot ends a word ("J. R."): one inside a word is a domain's."""
    words = cleaned.split()
    if not words or len(words) > 5 or max(map(len, words)) > MAX_NAME_WORD_LENGTH:
        return False
    if cleaned.isascii():
        return _ASCII_NAME.fullmatch(cleaned) is not None
    return _words_read_as_a_name(words)


def _words_read_as_a_name(words: list[str]) -> bool:
    """is_a_name's rule on the words, in any script."""
    if not any(unicodedata.category(ch)[0] == "L" for ch in words[0]):
        return False
    for word in words:
        if any(unicodedata.category(ch)[0] not in "LM" and unicodedata.category(ch) != "Nd" and ch not in _NAME_MARKS for ch in word):
            return False
        if "." in word.rstrip("."):
            return False
    return True


def name_to_greet(raw: str) -> str:
    """The name to show for `raw` (greeting, To header): cleaned, and empty when it is not a name,
    for names stored before they were checked as they are accepted now."""
    cleaned = clean_name(raw)
    return cleaned if is_a_name(cleaned) else ""


def accepted_name(raw: str) -> str:
    """A name as typed into a signup: cleaned, empty when left empty; SubscriptionError when it is
    not a name (a link, an address, digits), so it is never stored to greet anyone by."""
    cleaned = clean_name(raw)
    if cleaned and not is_a_name(cleaned):
        raise SubscriptionError(NOT_A_NAME)
    return cleaned


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(func.lower(Subscriber.email) == email.lower())).first()


def get_or_create_subscriber(
    session: Session,
    email: str,
    *,
    name: str = "",
    timezone_name: str = "UTC",
    now: datetime,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    language: str | None = None,
    source: str | None = None,
) -> Subscriber:
    """The subscriber with this address, or a new one (`language` and `source` are a new one's:
    see Subscriber.language and .source)."""
    address = normalize_email(email)
    zone = parse_timezone(timezone_name)
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            name=name_to_greet(name),  # callers taking a name from a person check it first (accepted_name)
            timezone=zone.key,
            status=status,
            created_at=now,
            confirmed_at=now if status == SubscriberStatus.ACTIVE else None,
            language=language,
            source=source,
        )
        session.add(subscriber)
        session.flush()
    return subscriber


def _live_lessons(session: Session, course_id: int) -> list[Lesson]:
    return list(
        session.scalars(
            select(Lesson).where(Lesson.course_id == course_id, Lesson.retired_at.is_(None)).order_by(Lesson.position)
        )
    )


def schedule_lessons(session: Session, enrollment: Enrollment, *, first_due: datetime, now: datetime) -> int:
    """Put every lesson the enrollment has not had yet into the ledger, the first one due at
    `first_due` and the rest on the course's cadence from there. Returns how many rows are open.

    1. Lessons already sent, failed or bounced for this subscriber keep their rows untouched.
    2. Lessons in flight (leased or sending) are left to their worker.
    3. The remaining lessons, in position order, get due times from lesson_due_times; existing open
       rows are moved (and un-cancelled), missing rows are inserted.
    """
    course = enrollment.course
    subscriber = enrollment.subscriber
    lessons = _live_lessons(session, course.id)
    existing = lesson_rows(session, subscriber.id, [lesson.id for lesson in lessons])
    settled = set(FINISHED_DELIVERY_STATES) | set(IN_FLIGHT_DELIVERY_STATES)
    remaining = [lesson for lesson in lessons if lesson.id not in existing or existing[lesson.id].state not in settled]
    due_times = lesson_due_times(
        first_due,
        len(remaining),
        zone=parse_timezone(subscriber.timezone),
        send_time=enrollment.send_time or course.send_time,
        days_between=course.days_between_lessons,
        weekdays=course.weekdays,
    )
    schedule_lesson_rows(
        session,
        existing,
        subscriber_id=subscriber.id,
        enrollment_id=enrollment.id,
        due_at_by_lesson=[(lesson.id, due_at) for lesson, due_at in zip(remaining, due_times, strict=True)],
        now=now,
    )
    return len(remaining)


def enroll(
    session: Session,
    subscriber: Subscriber,
    course: Course,
    *,
    now: datetime,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
) -> Enrollment:
    """Start (or restart) a course for a subscriber. A new enrollment starts at lesson 1, due now.
    A returning subscriber goes on where they left off: lessons they already had are not sent again.
    A pending enrollment (double opt-in not yet confirmed) writes no rows."""
    enrollment = session.scalars(
        select(Enrollment).where(Enrollment.subscriber_id == subscriber.id, Enrollment.course_id == course.id)
    ).first()
    if enrollment is None:
        enrollment = Enrollment(subscriber=subscriber, course=course, status=status, enrolled_at=now)
        session.add(enrollment)
        session.flush()
    elif enrollment.status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED):
        return enrollment  # already running or done: enrolling again changes nothing
    else:
        enrollment.status = status
    if status == EnrollmentStatus.ACTIVE:
        schedule_lessons(session, enrollment, first_due=now, now=now)
    return enrollment


def enroll_new(session: Session, course: Course, readers: list[tuple[int, str]], *, now: datetime) -> list[int]:
    """enroll() for many readers at once, each (subscriber id, time zone) active and new to the
    course: no enrollment in it and none of its lessons in the ledger (the caller checks; anyone
    else goes through enroll()). One INSERT of the enrollments, then the lesson rows: readers of
    one time zone share their due times (lesson 1 now, the rest on the course's cadence at its
    send time), so each zone's lessons are one INSERT … SELECT each. Returns the subscriber ids."""
    if not readers:
        return []
    enrollments = Enrollment.__table__
    created = session.execute(
        insert(enrollments).returning(enrollments.c.id, enrollments.c.subscriber_id),
        [{"subscriber_id": subscriber_id, "course_id": course.id, "status": EnrollmentStatus.ACTIVE.value, "enrolled_at": now}
         for subscriber_id, _zone in readers],
    ).all()  # fmt: skip
    zone_of = dict(readers)
    by_zone: dict[str, list[int]] = defaultdict(list)
    for enrollment_id, subscriber_id in created:
        by_zone[zone_of[subscriber_id]].append(enrollment_id)
    lessons = _live_lessons(session, course.id)
    for zone, enrollment_ids in by_zone.items():
        due_times = lesson_due_times(
            now, len(lessons), zone=parse_timezone(zone), send_time=course.send_time,
            days_between=course.days_between_lessons, weekdays=course.weekdays,
        )  # fmt: skip
        cohort = select(enrollments.c.id, enrollments.c.subscriber_id).where(enrollments.c.id.in_(enrollment_ids))
        for lesson, due_at in zip(lessons, due_times, strict=True):
            insert_lesson_rows(session, lesson.id, cohort, due_at=due_at, state=DeliveryState.PENDING, now=now)
    return [subscriber_id for _enrollment_id, subscriber_id in created]


def pause(session: Session, enrollment: Enrollment, *, now: datetime) -> None:
    enrollment.status = EnrollmentStatus.PAUSED
    hold_enrollment_rows(session, [enrollment.id])
    record_event(session, enrollment.subscriber_id, SubscriberEventKind.PAUSED, now=now, detail={"course_id": enrollment.course_id})


def resume(session: Session, enrollment: Enrollment, *, now: datetime, immediately: bool = False) -> None:
    """Go on with a paused course: the next lesson at the next local send time, or now."""
    enrollment.status = EnrollmentStatus.ACTIVE
    record_event(session, enrollment.subscriber_id, SubscriberEventKind.RESUMED, now=now, detail={"course_id": enrollment.course_id})
    course = enrollment.course
    first_due = now if immediately else next_send_slot(
        now,
        zone=parse_timezone(enrollment.subscriber.timezone),
        send_time=enrollment.send_time or course.send_time,
        weekdays=course.weekdays,
    )
    schedule_lessons(session, enrollment, first_due=first_due, now=now)


def _stopped(status: Any) -> ColumnElement[str]:
    """An unsubscribed enrollment's new status: unsubscribed, but a completed enrollment stays
    completed (it has nothing left to send anyway)."""
    return case(
        (status == EnrollmentStatus.COMPLETED.value, status), else_=literal(EnrollmentStatus.UNSUBSCRIBED.value)
    )


def last_sent_position(enrollments: Any = None) -> ColumnElement[int]:
    """The highest lesson position an enrollment has been sent (NULL: none), correlated to the
    enrollments table being updated (a few rows through ix_deliveries_enrollment)."""
    enrollments = Enrollment.__table__ if enrollments is None else enrollments
    deliveries, lessons = Delivery.__table__, Lesson.__table__
    return (
        select(func.max(lessons.c.position))
        .select_from(deliveries.join(lessons, lessons.c.id == deliveries.c.lesson_id))
        .where(deliveries.c.enrollment_id == enrollments.c.id, deliveries.c.state == DeliveryState.SENT.value)
        .correlate(enrollments)
        .scalar_subquery()
    )


def stopped_values(enrollments: Any = None) -> dict[str, Any]:
    """What every unsubscribe path sets on the enrollments it stops: the status (_stopped) and
    `left_after_position`, the last lesson sent, which the funnel's "unsubscribed after lesson n"
    groups by. Only an enrollment that becomes unsubscribed gets it: a completed one keeps its own."""
    enrollments = Enrollment.__table__ if enrollments is None else enrollments
    return {
        "status": _stopped(enrollments.c.status),
        "left_after_position": case(
            (enrollments.c.status == EnrollmentStatus.COMPLETED.value, enrollments.c.left_after_position),
            (enrollments.c.status == EnrollmentStatus.UNSUBSCRIBED.value, enrollments.c.left_after_position),
            else_=last_sent_position(enrollments),
        ),
    }


def unsubscribe(
    session: Session,
    subscriber: Subscriber | Row[Any],
    *,
    course_id: int | None,
    now: datetime,
    actor: str | None = None,
    reason: str = "",
) -> int:
    """Stop one course (course_id) or everything (None). Returns how many rows were cancelled.
    However many enrollments: two statements for one course (the enrollments' UPDATE ... RETURNING,
    the rows' cancel), three for everything (and the subscriber's own UPDATE), and the event.
    `actor` is the admin who did it (None: the subscriber), with their `reason`."""
    detail: dict[str, Any] = {"course_id": course_id} if course_id is not None else {}
    if reason:
        detail["reason"] = reason
    record_event(session, subscriber.id, SubscriberEventKind.UNSUBSCRIBED, now=now, actor=actor, detail=detail or None)
    stop = update(Enrollment).where(Enrollment.subscriber_id == subscriber.id)
    if course_id is not None:
        stop = stop.where(Enrollment.course_id == course_id)
    enrollment_ids = list(session.scalars(stop.values(stopped_values()).returning(Enrollment.id)))
    if course_id is not None:
        return cancel_enrollment_rows(session, enrollment_ids)
    # An UPDATE, not attributes: `subscriber` may be a row of columns (the one-click endpoint reads
    # no ORM object); a Subscriber loaded in this session gets the new values too.
    session.execute(
        update(Subscriber).where(Subscriber.id == subscriber.id).values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now)
    )
    # Every open row of the subscriber: the enrollments' and any campaign's.
    return cancel_subscriber_rows(session, [subscriber.id])


def _unsubscribe_statement(cancelling: Cancelling, *, everything: bool) -> Select[Any]:
    """unsubscribe() as one statement (PostgreSQL: data-modifying CTEs), the delivery rows' cancel
    one of them: the ledger builds that part with `cancelling`, runs the whole and keeps it built. Parameters
    `who` (the subscriber's id) and `which_course` (one course) or `when` (everything); it returns
    one row: the subscriber's address (NULL when there is no such subscriber), how many rows it
    cancelled, and what it stopped (the ids of the enrollments that were active, of those that were
    paused, and the subscriber's status before): every part of one statement reads the same
    snapshot, so `before` and `was` see the rows as they were before the UPDATEs. No parameter is named like a column: SQLAlchemy reads a parameter named after a
    column of an UPDATE's table as a value to SET (subscriber_id would have moved rows)."""
    enrollments, subscribers = Enrollment.__table__.c, Subscriber.__table__.c
    stop = update(Enrollment.__table__).where(enrollments.subscriber_id == bindparam("who"))
    if not everything:
        stop = stop.where(enrollments.course_id == bindparam("which_course"))
    stopped = stop.values(stopped_values(Enrollment.__table__)).returning(enrollments.id).cte("stopped")
    running = [EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]
    before = select(enrollments.id, enrollments.status).where(enrollments.subscriber_id == bindparam("who"), enrollments.status.in_(running))
    if not everything:
        before = before.where(enrollments.course_id == bindparam("which_course"))
    before_cte = before.cte("before")

    def ids_that_were(status: EnrollmentStatus) -> Any:
        return select(func.array_agg(before_cte.c.id).filter(before_cte.c.status == status.value)).scalar_subquery()

    was = select(subscribers.status).where(subscribers.id == bindparam("who")).scalar_subquery()
    if everything:
        gone = (
            update(Subscriber.__table__)
            .where(subscribers.id == bindparam("who"))
            .values(status=SubscriberStatus.UNSUBSCRIBED.value, unsubscribed_at=bindparam("when"))
            .returning(subscribers.email)
            .cte("gone")
        )
        cancelled = cancelling(lambda rows: subscriber_rows(rows, lambda column: column == bindparam("who"))).cte("cancelled")
        email = select(gone.c.email).scalar_subquery()
    else:
        cancelled = cancelling(lambda rows: rows.enrollment_id.in_(select(stopped.c.id))).cte("cancelled")
        email = select(subscribers.email).where(subscribers.id == bindparam("who")).scalar_subquery()
    # The event, as unsubscribe() records it (course.audience.events), for a subscriber who exists.
    events = SubscriberEvent.__table__
    detail = func.json_build_object("course_id", bindparam("which_course")) if not everything else literal(None, events.c.detail.type)
    recorded = (
        events.insert()
        .from_select(
            ["subscriber_id", "kind", "occurred_at", "detail"],
            select(subscribers.id, literal(SubscriberEventKind.UNSUBSCRIBED.value), bindparam("at", type_=events.c.occurred_at.type), detail)
            .where(subscribers.id == bindparam("who")),
        )
        .returning(events.c.id)
        .cte("recorded")
    )
    # ...and its counter, as course.counters.add does it (`day` and `shard` are parameters).
    figures = Counter.__table__
    count_it = postgresql.insert(figures).from_select(
        ["scope", "key", "day", "shard", "value"],
        select(
            literal(counters.EVENTS), literal(SubscriberEventKind.UNSUBSCRIBED.value),
            bindparam("day", type_=figures.c.day.type), bindparam("shard", type_=figures.c.shard.type), func.count(),
        ).select_from(recorded).having(func.count() > 0),
    )  # fmt: skip
    counted = count_it.on_conflict_do_update(
        index_elements=["scope", "key", "day", "shard"], set_={"value": figures.c.value + count_it.excluded.value}
    ).cte("counted")
    # Every CTE runs to completion whether or not the outer SELECT reads it (PostgreSQL's rule for
    # data-modifying ones); add_cte makes sure `stopped` and `recorded` are in the statement when nothing names them.
    return select(
        email,
        select(func.count()).select_from(cancelled).scalar_subquery(),
        ids_that_were(EnrollmentStatus.ACTIVE),
        ids_that_were(EnrollmentStatus.PAUSED),
        was,
    ).add_cte(stopped, recorded, counted)


@dataclass(frozen=True)
class Stopped:
    """What one unsubscribe stopped, so that it can be taken back exactly and nothing more: the
    enrollments that were active, those that were paused, and for "all email" the moment the
    subscriber's own mail was turned off (None when it was not on: nothing of theirs to restore)."""

    active: tuple[int, ...] = ()
    paused: tuple[int, ...] = ()
    subscriber_at: datetime | None = None

    @property
    def anything(self) -> bool:
        return bool(self.active or self.paused or self.subscriber_at)


def what_unsubscribe_stops(session: Session, subscriber_id: int, *, course_id: int | None, now: datetime) -> Stopped:
    """What unsubscribe() is about to stop (read before it, in its transaction)."""
    query = select(Enrollment.id, Enrollment.status).where(
        Enrollment.subscriber_id == subscriber_id, Enrollment.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED])
    )
    if course_id is not None:
        query = query.where(Enrollment.course_id == course_id)
    rows = session.execute(query).all()
    status = session.scalar(select(Subscriber.status).where(Subscriber.id == subscriber_id)) if course_id is None else None
    return Stopped(
        active=tuple(sorted(row.id for row in rows if row.status == EnrollmentStatus.ACTIVE)),
        paused=tuple(sorted(row.id for row in rows if row.status == EnrollmentStatus.PAUSED)),
        subscriber_at=now if status == SubscriberStatus.ACTIVE else None,
    )


def resubscribe(session: Session, subscriber_id: int, stopped: Stopped, *, now: datetime) -> bool:
    """Take one unsubscribe back: exactly what it stopped, and only while nothing has changed since.

    1. "All email": the subscriber must still be unsubscribed from that very moment (a later
       unsubscribe, a bounce, anything since: nothing is restored); their mail is on again.
    2. Otherwise the subscriber must still be active (not bounced or unsubscribed from all since).
    3. Each listed enrollment still unsubscribed comes back as it was: an active one resumes (its
       next lesson at the next send time), a paused one is paused again (resume schedules it).
    Campaign rows cancelled by an "all email" unsubscribe stay cancelled. Returns whether
    anything was restored."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    if stopped.subscriber_at is not None:
        if subscriber.status != SubscriberStatus.UNSUBSCRIBED or subscriber.unsubscribed_at != stopped.subscriber_at:
            return False
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.unsubscribed_at = None
    elif subscriber.status != SubscriberStatus.ACTIVE:
        return False
    record_event(session, subscriber_id, SubscriberEventKind.RESUBSCRIBED, now=now, detail={"source": "unsubscribe page"})
    restored = stopped.subscriber_at is not None
    listed = (*stopped.active, *stopped.paused)
    for enrollment in session.scalars(
        select(Enrollment).where(
            Enrollment.id.in_(listed), Enrollment.subscriber_id == subscriber_id, Enrollment.status == EnrollmentStatus.UNSUBSCRIBED
        )
    ):
        if enrollment.id in stopped.active:
            resume(session, enrollment, now=now)
        else:
            enrollment.status = EnrollmentStatus.PAUSED
        restored = True
    return restored


def unsubscribe_in_one(
    connection: Connection, subscriber_id: int, *, course_id: int | None, now: datetime
) -> tuple[str | None, Stopped]:
    """unsubscribe() in one statement on PostgreSQL, for the one-click endpoint: on an autocommit
    connection it is its own transaction, one round trip where the ORM version takes five (BEGIN,
    three statements, COMMIT). Returns the subscriber's address, None when there is no such
    subscriber (then nothing changed), and what it stopped."""
    everything = course_id is None
    parameters = {
        "who": subscriber_id, "at": now, "day": counters.utc_day(now), "shard": counters.shard_of_this_thread(),
        **({"when": now} if everything else {"which_course": course_id}),
    }  # fmt: skip
    email, _, active, paused, was = run_with_cancelling(
        connection, ("unsubscribe", everything), lambda cancelling: _unsubscribe_statement(cancelling, everything=everything), parameters
    )
    stopped = Stopped(
        active=tuple(sorted(active or ())),
        paused=tuple(sorted(paused or ())),
        subscriber_at=now if everything and was == SubscriberStatus.ACTIVE else None,
    )
    return email, stopped


def extend_enrollments(session: Session, course_id: int, *, now: datetime) -> int:
    """A course gained lessons (new or back from retirement): its running enrollments get them after
    the ones they are already waiting for. Returns how many enrollments were extended."""
    extended = 0
    for enrollment in session.scalars(
        select(Enrollment).where(Enrollment.course_id == course_id, Enrollment.status == EnrollmentStatus.ACTIVE)
    ):
        schedule_lessons(session, enrollment, first_due=next_pending_due(session, enrollment.id) or now, now=now)
        extended += 1
    return extended
