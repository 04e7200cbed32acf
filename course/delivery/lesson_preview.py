"""A lesson as one reader would get it, without sending it: the admin's lesson preview, and the
"send me this lesson" test that mails the same to any address. The same composer as the sender,
with the reader's name; its preference and unsubscribe links lead to the pages that say what they
do and act on nobody (an admin's click must not unsubscribe the reader it shows). Reads only, but
for `send_lesson_test`, which queues its one row through the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.audience.enrollment import SubscriptionError, find_subscriber, normalize_email
from course.delivery.compose import ComposedEmail, Composer, Recipient, lesson_content
from course.ledger import add_lesson_test
from course.models import Delivery, Enrollment, Lesson, Subscriber

SAMPLE_READERS = 8  # the course's first few readers, offered as "preview as"
STAND_IN = Recipient(delivery_id=0, subscriber_id=0, name="Sample Reader", email="reader@example.org")


class LessonTestError(ValueError):
    """A test send refused, in words for the editor."""


@dataclass(frozen=True)
class LessonPreview:
    composed: ComposedEmail
    reader: Subscriber | None  # whom it is shown as (None: a sample reader)
    note: str  # why someone else stands in for the address asked for (else empty)
    samples: list[Subscriber]  # the course's first readers


def _chosen_reader(session: Session, lesson: Lesson, wanted: str) -> tuple[Subscriber | None, str, list[Subscriber]]:
    first = select(Enrollment.subscriber_id).where(Enrollment.course_id == lesson.course_id).order_by(Enrollment.id).limit(SAMPLE_READERS)
    samples = list(session.scalars(select(Subscriber).where(Subscriber.id.in_(first)).order_by(Subscriber.id)))
    wanted = wanted.strip()[:320]
    chosen = find_subscriber(session, wanted) if wanted else None
    note = ""
    if wanted and chosen is None:
        note = f"No subscriber has the address {wanted}: shown as {samples[0].email if samples else 'a sample reader'} instead."
    return chosen or (samples[0] if samples else None), note, samples


def preview_lesson(session: Session, composer: Composer, lesson: Lesson, subscriber: str) -> LessonPreview:
    """`lesson` composed for `subscriber` (an address). Without one, or with one that is not a
    subscriber, the course's first reader stands in (or a sample reader), and the note says so."""
    reader, note, samples = _chosen_reader(session, lesson, subscriber)
    recipient = Recipient.of_subscriber(reader, delivery_id=0) if reader is not None else STAND_IN
    composed = composer.lesson(recipient, lesson_content(lesson, lesson_count=_live_count(session, lesson)), preview=True)
    return LessonPreview(composed, reader, note, samples)


def _live_count(session: Session, lesson: Lesson) -> int:
    return session.scalar(select(func.count()).where(Lesson.course_id == lesson.course_id, Lesson.retired_at.is_(None))) or 0


def send_lesson_test(session: Session, lesson: Lesson, *, address: str, preview_as: str, now: datetime) -> Delivery:
    """Queue the lesson as the subscriber `preview_as` gets it (blank: the course's first reader, or
    a sample reader), to `address`, through the ledger ahead of bulk mail; it is in no count of the
    lesson. A malformed address or an unknown reader is refused and nothing is queued."""
    try:
        to = normalize_email(address)
    except SubscriptionError as exc:
        raise LessonTestError(str(exc)) from None
    reader, note, _ = _chosen_reader(session, lesson, preview_as)
    if note:
        raise LessonTestError(f"no subscriber has the address {preview_as.strip()[:320]}")
    return add_lesson_test(session, lesson_id=lesson.id, subscriber_id=reader.id if reader is not None else None, address=to, now=now)
