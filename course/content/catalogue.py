"""What the course pages read about the imported courses: the list with lesson counts, one course
by its slug, its live (not retired) lessons in order, and the catalogue's version, by which the web
processes know when what they cached from all this is out of date."""

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


# Bumped by the importer in this process, so this process's caches drop at once what it changed;
# other processes see the change through catalogue_version.
_generation = 0


def catalogue_changed() -> None:
    global _generation
    _generation += 1


def local_generation() -> int:
    return _generation


def catalogue_version(session: Session) -> tuple[object, ...]:
    """What changes whenever an import changes a course or a lesson (each sets its updated_at, and a
    new course or lesson changes the counts): one SELECT over two small tables."""
    row = session.execute(
        select(
            select(func.count(Course.id)).scalar_subquery(),
            select(func.max(Course.updated_at)).scalar_subquery(),
            select(func.count(Lesson.id)).scalar_subquery(),
            select(func.max(Lesson.updated_at)).scalar_subquery(),
        )
    ).one()
    return tuple(row)
