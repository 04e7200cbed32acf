"""How a course is doing, for the admin: its readers by enrollment state, the next lesson sends due,
and its funnel (enrolled, confirmed, received each lesson, finished, paused, unsubscribed after
each lesson, bounced, and the bounces and complaints reported about each lesson after it was sent).
Reads only; a handful of GROUP BY statements per course.

The funnel's "unsubscribed after lesson N" is the last lesson the reader was sent before leaving
(0: before the first lesson)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course import counters
from course.models import (
    BounceKind,
    BounceReport,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberStatus,
)


@dataclass(frozen=True)
class CourseReaders:
    """A course's enrollments by state. `enrolled` counts every enrollment, pending ones included."""

    enrolled: int = 0
    pending: int = 0
    active: int = 0
    paused: int = 0
    finished: int = 0
    unsubscribed: int = 0

    @classmethod
    def of_counts(cls, by_status: dict[str, int]) -> CourseReaders:
        return cls(
            enrolled=sum(by_status.values()),
            pending=by_status.get(EnrollmentStatus.PENDING, 0),
            active=by_status.get(EnrollmentStatus.ACTIVE, 0),
            paused=by_status.get(EnrollmentStatus.PAUSED, 0),
            finished=by_status.get(EnrollmentStatus.COMPLETED, 0),
            unsubscribed=by_status.get(EnrollmentStatus.UNSUBSCRIBED, 0),
        )


def course_readers(session: Session, course_ids: Sequence[int]) -> dict[int, CourseReaders]:
    """Each course's readers by enrollment state (one GROUP BY); a course nobody joined gets zeros."""
    by_course: dict[int, dict[str, int]] = {course_id: {} for course_id in course_ids}
    if course_ids:
        rows = session.execute(
            select(Enrollment.course_id, Enrollment.status, func.count())
            .where(Enrollment.course_id.in_(list(course_ids)))
            .group_by(Enrollment.course_id, Enrollment.status)
        ).all()
        for course_id, status, count in rows:
            by_course[course_id][status] = count
    return {course_id: CourseReaders.of_counts(counts) for course_id, counts in by_course.items()}


# "Next sends due" counts at most this many waiting readers a lesson (ix_deliveries_lesson_due):
# past it the page says "more than", and a course of a million readers costs what one of 10,000 does.
NEXT_SENDS_COUNT_CAP = 10_000


@dataclass(frozen=True)
class NextSend:
    """Readers waiting for one lesson: how many (`more`: more than `readers`, the count's cap), and
    when the first of them is due."""

    position: int
    title: str
    first_due_at: datetime
    readers: int
    more: bool = False


def next_sends(session: Session, course_id: int, *, limit: int = 5, cap: int | None = None) -> list[NextSend]:
    """The course's queued lesson rows (pending, leased) per lesson, soonest first (held rows are
    paused readers', and wait for them). Both reads go through ix_deliveries_lesson_due: each
    lesson's first row by due time (one index probe a lesson), then for the `limit` lessons shown a
    count that stops after `cap` + 1 rows, so the cost follows the number of lessons, not of readers."""

    def queued(lesson_id: Any) -> tuple[Any, ...]:
        return (
            Delivery.lesson_id == lesson_id,
            Delivery.kind == DeliveryKind.LESSON,
            Delivery.state.in_((DeliveryState.PENDING, DeliveryState.LEASED)),
        )

    first_due = (
        select(Delivery.due_at).where(*queued(Lesson.id)).order_by(Delivery.due_at).limit(1).correlate(Lesson).scalar_subquery()
    )
    lessons = select(Lesson.id, Lesson.position, Lesson.title, first_due.label("first_due")).where(Lesson.course_id == course_id).subquery()
    rows = session.execute(
        select(lessons).where(lessons.c.first_due.is_not(None)).order_by(lessons.c.first_due, lessons.c.position).limit(limit)
    ).all()
    cap = NEXT_SENDS_COUNT_CAP if cap is None else cap
    due: list[NextSend] = []
    for lesson_id, position, title, first_due_at in rows:
        waiting = select(Delivery.id).where(*queued(lesson_id)).limit(cap + 1).subquery()
        count = session.scalar(select(func.count()).select_from(waiting)) or 0
        due.append(NextSend(position, title, first_due_at, min(count, cap), more=count > cap))
    return due


@dataclass(frozen=True)
class Funnel:
    """One course's funnel. `received[n]`: readers sent lesson n (1-based, every live lesson listed);
    `unsubscribed_after[n]`: readers who left after lesson n was the last they were sent (0: none)."""

    lesson_titles: dict[int, str]
    enrolled: int
    confirmed: int
    received: dict[int, int]
    finished: int
    paused: int
    unsubscribed_after: dict[int, int] = field(default_factory=dict)
    bounced: int = 0
    # Reported after sending (course/bounces), per lesson position: bounce reports (hard and soft)
    # and complaints.
    bounce_reports: dict[int, int] = field(default_factory=dict)
    complaints: dict[int, int] = field(default_factory=dict)

    @property
    def unsubscribed(self) -> int:
        return sum(self.unsubscribed_after.values())

    def rows(self) -> list[tuple[str, str, int]]:
        """The funnel as (step key, label, readers) rows, in order: what the table, the chart and
        the CSV all show."""
        rows = [("enrolled", "Enrolled", self.enrolled), ("confirmed", "Confirmed", self.confirmed)]
        rows += [
            (f"received_{n}", f"Received lesson {n}: {self.lesson_titles[n]}", self.received.get(n, 0))
            for n in sorted(self.lesson_titles)
        ]
        rows += [("finished", "Finished", self.finished), ("paused", "Paused now", self.paused)]
        rows += [
            (f"unsubscribed_after_{n}", f"Unsubscribed after lesson {n}" if n else "Unsubscribed before lesson 1", count)
            for n, count in sorted(self.unsubscribed_after.items())
        ]
        rows.append(("bounced", "Bounced", self.bounced))
        rows.append(("bounce_reports", "Bounce reports after sending", sum(self.bounce_reports.values())))
        rows += [(f"bounce_reports_{n}", f"Bounce reports about lesson {n}", count) for n, count in sorted(self.bounce_reports.items()) if count]
        rows.append(("complaints", "Spam complaints", sum(self.complaints.values())))
        rows += [(f"complaints_{n}", f"Spam complaints about lesson {n}", count) for n, count in sorted(self.complaints.items()) if count]
        return rows


def course_funnel(session: Session, course_id: int, *, readers: CourseReaders | None = None) -> Funnel:
    """1. Enrollments by state (pending ones are not confirmed).
    2. Lesson rows sent, per lesson position (course.counters: no scan of the ledger).
    3. Unsubscribed enrollments by the last lesson position they were sent (kept at the unsubscribe).
    4. Enrollees whose address bounced (from the bounced readers).
    5. Bounce reports and complaints per lesson (ix_bounce_reports_lesson, from the course's lessons)."""
    lessons = session.execute(
        select(Lesson.id, Lesson.position, Lesson.title)
        .where(Lesson.course_id == course_id, Lesson.retired_at.is_(None))
        .order_by(Lesson.position)
    ).all()
    titles = {lesson.position: lesson.title for lesson in lessons}
    if readers is None:  # the caller may have read them already (the course page)
        readers = course_readers(session, [course_id])[course_id]
    # Rows sent per lesson, from the counters the ledger keeps as it marks rows sent.
    sent_per_lesson = counters.totals(session, counters.LESSON_SENT, [str(lesson.id) for lesson in lessons])
    sent = {lesson.position: sent_per_lesson[str(lesson.id)] for lesson in lessons}
    # Set as each enrollment was unsubscribed (enrollment.stopped_values): a GROUP BY over
    # ix_enrollments_left_after, which holds unsubscribed enrollments only.
    left: Counter[int] = Counter()
    for position, count in session.execute(
        select(Enrollment.left_after_position, func.count())
        .where(Enrollment.course_id == course_id, Enrollment.status == EnrollmentStatus.UNSUBSCRIBED)
        .group_by(Enrollment.left_after_position)
    ):
        left[position or 0] += count
    # From the bounced readers (ix_subscribers_status), each probing the unique (subscriber_id,
    # course_id): bounced readers are few, a course's enrollments many.
    bounced = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.BOUNCED,
            select(Enrollment.id)
            .where(Enrollment.subscriber_id == Subscriber.id, Enrollment.course_id == course_id)
            .exists(),
        )
    )
    reports: dict[str, Counter[int]] = {BounceKind.HARD: Counter(), BounceKind.SOFT: Counter(), BounceKind.COMPLAINT: Counter()}
    for position, kind, count in session.execute(
        select(Lesson.position, BounceReport.kind, func.count())
        .join(BounceReport, BounceReport.lesson_id == Lesson.id)
        .where(Lesson.course_id == course_id)
        .group_by(Lesson.position, BounceReport.kind)
    ):
        if kind in reports:
            reports[kind][position] += count
    return Funnel(
        lesson_titles=titles,
        enrolled=readers.enrolled,
        confirmed=readers.enrolled - readers.pending,
        received={position: sent.get(position, 0) for position in titles},
        finished=readers.finished,
        paused=readers.paused,
        unsubscribed_after=dict(left),
        bounced=bounced or 0,
        bounce_reports=dict(reports[BounceKind.HARD] + reports[BounceKind.SOFT]),
        complaints=dict(reports[BounceKind.COMPLAINT]),
    )
