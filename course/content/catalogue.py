"""What the course pages read about the imported courses: the list with lesson counts, one course
by its slug, and its live (not retired) lessons in order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.models import Course, Lesson


@dataclass(frozen=True)
class CourseListing:
    course: Course
    lesson_count: int


def list_courses(session: Session) -> list[CourseListing]:
    """Every course by title, with how many live lessons it has (one query)."""
    rows = session.execute(
        select(Course, func.count(Lesson.id))
        .outerjoin(Lesson, (Lesson.course_id == Course.id) & Lesson.retired_at.is_(None))
        .group_by(Course.id)
        .order_by(Course.title)
    ).all()
    return [CourseListing(course, count) for course, count in rows]


def find_course(session: Session, slug: str) -> Course | None:
    return session.scalars(select(Course).where(Course.slug == slug)).first()


def live_lessons(session: Session, course: Course) -> list[Lesson]:
    return list(
        session.scalars(
            select(Lesson).where(Lesson.course_id == course.id, Lesson.retired_at.is_(None)).order_by(Lesson.position)
        )
    )
