"""Small builders for the drip-pipeline tests: a course with lessons written straight into the
database (no article parsing), subscribers enrolled through course.enrollment, and readers that
turn the ledger into plain values a test can compare."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from course.content.blocks import Paragraph, escape_inline
from course.content.lesson_body import LessonBody
from course.db import make_engine
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.models import Base, Course, Delivery, Enrollment, Lesson, Subscriber
from course.audience.schedule import ALL_WEEKDAYS
from course.models import weekday_mask


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on PostgreSQL and on SQLite (via conftest's `database_url`), without the
    SMTP server that conftest's `sessions` fixture brings along."""
    engine = make_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def lesson_body(text_: str) -> dict[str, Any]:
    return LessonBody(blocks=(Paragraph(escape_inline(text_)),)).to_json()


def make_course(
    session: Session,
    *,
    now: datetime,
    slug: str = "bread",
    lessons: int = 3,
    days_between: int = 1,
    weekdays: frozenset[int] = ALL_WEEKDAYS,
    send_time: time = time(9, 0),
) -> Course:
    course = Course(
        slug=slug,
        title=f"Course {slug}",
        description="",
        days_between_lessons=days_between,
        send_time=send_time,
        weekday_mask=weekday_mask(weekdays),
        sender_name="The Letter",
        sender_email="lessons@example.com",
        target_words=300,
        created_at=now,
        updated_at=now,
    )
    session.add(course)
    session.flush()
    for position in range(1, lessons + 1):
        session.add(
            Lesson(
                course_id=course.id,
                position=position,
                title=f"{slug} part {position}",
                body=lesson_body(f"Paragraph of {slug} lesson {position}."),
                words=5,
                reading_minutes=1,
                content_hash=f"{slug}-{position}",
                updated_at=now,
            )
        )
    session.flush()
    return course


def enroll_people(
    session: Session, course: Course, addresses: list[str], *, now: datetime, timezone_name: str = "UTC"
) -> list[Subscriber]:
    people = []
    for address in addresses:
        subscriber = get_or_create_subscriber(session, address, name="Reader", timezone_name=timezone_name, now=now)
        enroll(session, subscriber, course, now=now)
        people.append(subscriber)
    return people


def deliveries(session: Session, **where: Any) -> list[Delivery]:
    query = select(Delivery).order_by(Delivery.id)
    for name, value in where.items():
        query = query.where(getattr(Delivery, name) == value)
    return list(session.scalars(query))


def rows_of(session: Session, enrollment: Enrollment) -> list[Delivery]:
    return list(
        session.scalars(
            select(Delivery).join(Lesson, Lesson.id == Delivery.lesson_id)
            .where(Delivery.enrollment_id == enrollment.id)
            .order_by(Lesson.position)
        )
    )


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: equal snapshots mean an unchanged database."""
    return {
        table.name: sorted((tuple(map(repr, row)) for row in session.execute(text(f'SELECT * FROM "{table.name}"'))))
        for table in Base.metadata.sorted_tables
    }
