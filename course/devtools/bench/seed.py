"""Seeding a benchmark database: subscribers, the course, and a lesson day's ledger, each with
INSERT … SELECT over generate_series, never row by row."""

from __future__ import annotations

from datetime import datetime, time as clock_time, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from course.content.blocks import Heading, Paragraph
from course.content.lesson_body import LessonBody
from course.ledger import insert_lesson_rows
from course.models import DeliveryState, Enrollment

ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles", "Europe/London",
         "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo", "Africa/Lagos", "UTC")

# A lesson of about 350 words: the size of a real one, so the bytes on the wire are realistic.
PARAGRAPH = (
    "Oxytocin is released in short pulses, and each pulse lasts only a minute or two. That is why "
    "a calm, familiar routine before a feed helps: the body learns the cues and starts the reflex "
    "a little earlier each time. Warmth, skin contact and a quiet room all help; stress hormones "
    "work against it, which is why a tense first week so often feels harder than it should."
)


def _lesson_body(index: int) -> dict[str, Any]:
    return LessonBody(
        blocks=(
            *(Paragraph(PARAGRAPH),) * 2,
            Heading(f"Part {index}: what to try", 2),
            *(Paragraph(PARAGRAPH),) * 3,
        )
    ).to_json()


def seed_subscribers(session: Session, count: int, *, now: datetime, tag: str | None, untagged: int = 0) -> None:
    """count + untagged active subscribers; every tenth has a non-ASCII name (encoded-word headers)."""
    zones = "ARRAY[" + ",".join(f"'{zone}'" for zone in ZONES) + "]"
    session.execute(
        text(
            f"""
            INSERT INTO subscribers (email, name, timezone, status, created_at, confirmed_at)
            SELECT 'reader' || n || '@example.org',
                   CASE WHEN n % 10 = 0 THEN 'Zoë Łukasiewicz' ELSE 'Reader ' || n END,
                   ({zones})[1 + n % {len(ZONES)}], 'active', :now, :now
            FROM generate_series(1, :total) AS n
            """
        ),
        {"now": now, "total": count + untagged},
    )
    if tag is not None:
        session.execute(
            text("INSERT INTO subscriber_tags (subscriber_id, tag) SELECT id, :tag FROM subscribers WHERE id <= :count"),
            {"tag": tag, "count": count},
        )


def seed_course(session: Session, *, now: datetime) -> tuple[int, list[int]]:
    from course.models import Course, Lesson

    course = Course(
        slug="bench-course", title="Bonding, Explained", description="", days_between_lessons=1,
        send_time=clock_time(9, 0), weekday_mask=0b1111111, sender_name="Bonding Course",
        sender_email="course@example.org", target_words=300, created_at=now, updated_at=now,
    )
    session.add(course)
    session.flush()
    lessons = [
        Lesson(course_id=course.id, position=i, title=f"Lesson title {i}", body=_lesson_body(i), words=350,
               reading_minutes=2, content_hash=f"{i:064d}", updated_at=now)
        for i in (1, 2, 3)
    ]
    session.add_all(lessons)
    session.flush()
    return course.id, [lesson.id for lesson in lessons]


def seed_lesson_day(session: Session, *, course_id: int, lesson_ids: list[int], now: datetime, due_at: datetime) -> None:
    """Enroll everyone; lesson 1 sent yesterday, lesson 2 due at due_at, lesson 3 due tomorrow."""
    session.execute(
        text(
            "INSERT INTO enrollments (subscriber_id, course_id, status, enrolled_at) "
            "SELECT id, :course, 'active', :yesterday FROM subscribers"
        ),
        {"course": course_id, "yesterday": now - timedelta(days=1)},
    )
    cohort = select(Enrollment.id, Enrollment.subscriber_id).where(Enrollment.course_id == course_id)
    for lesson_id, state, due in (
        (lesson_ids[0], DeliveryState.SENT, now - timedelta(days=1)),
        (lesson_ids[1], DeliveryState.PENDING, due_at),
        (lesson_ids[2], DeliveryState.PENDING, due_at + timedelta(days=1)),
    ):
        insert_lesson_rows(session, lesson_id, cohort, due_at=due, state=state, now=now - timedelta(days=1))


def schedule_bench_campaign(session: Session, *, now: datetime) -> tuple[int, datetime]:
    """The benchmark's newsletter to the "newsletter" tag, scheduled for now through the campaign
    service (as `course campaign schedule` does). Returns its id and send time."""
    from course.campaigns.service import schedule_campaign

    campaign = schedule_campaign(
        session, name="bench", subject="This week: sleep, feeding and the let-down reflex",
        body_markdown="\n\n".join([PARAGRAPH] * 5), segment_tag="newsletter",
        sender_name="The Bonding Letter", sender_email="letter@example.org", send_at=None, now=now,
    )  # fmt: skip
    assert campaign.send_at is not None  # scheduled
    return campaign.id, campaign.send_at
