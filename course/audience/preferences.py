"""The preferences page's read model: a subscriber's enrollments, each with its course and progress
(lessons sent, lessons in the course, next lesson due), in the subscriber's own time.

One SELECT for any number of enrollments: the course is joined and each count is a correlated
subquery, so a reader in ten courses costs the database what a reader in one does (the page used
to ask three queries per enrollment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from course.audience.schedule import parse_timezone
from course.models import QUEUED_DELIVERY_STATES, Course, Delivery, DeliveryState, Enrollment, Lesson, Subscriber


@dataclass(frozen=True)
class EnrollmentView:
    """One course on the preferences page, in the subscriber's own time."""

    enrollment_id: int
    course_id: int
    course_title: str
    course_slug: str
    course_language: str  # the page about this subscriber speaks it when all their courses do
    status: str
    send_time: str  # "09:00", local
    own_send_time: bool  # False: the course's default
    lessons_sent: int
    lesson_count: int
    next_due_local: str | None
    next_due_at: datetime | None  # the same moment, aware, in the subscriber's zone (for locale formats)


@cache
def _enrollments_statement() -> Select[Any]:
    """Built once: constructing this SELECT and its cache key cost more than running it. Of the
    tables' columns, not the ORM's attributes: the page reads a handful of values, and ORM
    statements pay the ORM's per-execution bookkeeping (about a third of a small query's time)."""
    enrollments, courses = Enrollment.__table__.c, Course.__table__.c
    deliveries, lessons = Delivery.__table__.c, Lesson.__table__.c
    lesson_rows = (deliveries.enrollment_id == enrollments.id, deliveries.lesson_id.is_not(None))
    lessons_sent = (
        select(func.count())
        .where(*lesson_rows, deliveries.state == DeliveryState.SENT.value)
        .correlate(Enrollment.__table__)
        .scalar_subquery()
    )
    next_due = (
        select(func.min(deliveries.due_at))
        .where(*lesson_rows, deliveries.state.in_([state.value for state in QUEUED_DELIVERY_STATES]))
        .correlate(Enrollment.__table__)
        .scalar_subquery()
    )
    lesson_count = (
        select(func.count())
        .where(lessons.course_id == courses.id, lessons.retired_at.is_(None))
        .correlate(Course.__table__)
        .scalar_subquery()
    )
    return (
        select(
            enrollments.id, enrollments.course_id, enrollments.status, enrollments.send_time, enrollments.enrolled_at,
            courses.title, courses.slug, courses.language, courses.send_time, lessons_sent, next_due, lesson_count,
        )
        .join_from(Enrollment.__table__, Course.__table__, courses.id == enrollments.course_id)
        .where(enrollments.subscriber_id == bindparam("subscriber_id"))
        .order_by(enrollments.id)
    )


class SubscriberRef(Protocol):
    """What the read model needs of a subscriber: a Subscriber, or a row of its columns."""

    @property
    def id(self) -> int: ...

    @property
    def timezone(self) -> str: ...


@cache
def _subscriber_statement() -> Select[Any]:
    """The preferences page's subscriber, as columns (built once and Core, like the enrollments')."""
    subscribers = Subscriber.__table__.c
    return select(subscribers.id, subscribers.email, subscribers.status, subscribers.timezone).where(
        subscribers.id == bindparam("subscriber_id")
    )


def subscriber_row(session: Session, subscriber_id: int) -> Any | None:
    """id, email, status and timezone of a subscriber, or None: what the page shows of them."""
    return session.execute(_subscriber_statement(), {"subscriber_id": subscriber_id}).first()


def enrollment_views(session: Session, subscriber: SubscriberRef, first_course_id: int | None = None) -> list[EnrollmentView]:
    """The subscriber's enrollments, the course `first_course_id` first (the one whose mail led
    here), then in the order they were made."""
    rows = session.execute(_enrollments_statement(), {"subscriber_id": subscriber.id}).all()
    zone = parse_timezone(subscriber.timezone)
    rows.sort(key=lambda row: (row.course_id != first_course_id, row.enrolled_at))
    return [
        EnrollmentView(
            enrollment_id=enrollment_id,
            course_id=course_id,
            course_title=title,
            course_slug=slug,
            course_language=language,
            status=status,
            send_time=(own_time or course_time).strftime("%H:%M"),
            own_send_time=own_time is not None,
            lessons_sent=sent or 0,
            lesson_count=count or 0,
            next_due_local=due.astimezone(zone).strftime("%a %-d %b, %H:%M") if due else None,
            next_due_at=due.astimezone(zone) if due else None,
        )
        for enrollment_id, course_id, status, own_time, _, title, slug, language, course_time, sent, due, count in rows
    ]
