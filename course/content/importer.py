"""Load courses and their lessons from content/ into the database, idempotently.

Lessons are identified by (course, position). Importing unchanged content changes nothing. An edited
article updates the lessons in place: subscribers who have not had a lesson yet get the new text
(lessons are rendered at send time), and a lesson already sent is never sent again, because the
ledger holds one row per (subscriber, lesson). Lessons that disappear are retired and their open
rows cancelled (through course.ledger). Lessons that appear are reported in CourseImport
(gained_lessons): scheduling them for running enrollments is the audience's business
(course.audience.course_content.import_content, which the commands call). Everything is planned
before anything is written, and written in the caller's one transaction, so a broken article
leaves the database as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from course.content.catalogue import catalogue_changed
from course.content.definition import CourseDefinitionError, CoursePlan, PlannedLesson, load_course_definitions, plan_course
from course.content.guides import GuideCatalogue, load_guides
from course.content.lesson_body import LessonBody, StoredReference
from course.ledger import cancel_lesson_rows
from course.models import Course, Lesson, weekday_mask


@dataclass
class CourseImport:
    slug: str
    course_id: int = 0
    created: bool = False
    lessons_added: int = 0
    lessons_updated: int = 0
    lessons_retired: int = 0
    lessons_unchanged: int = 0
    deliveries_cancelled: int = 0
    enrollments_extended: int = 0
    unmatched_references: list[str] = field(default_factory=list)
    # An existing course got lessons (new or back from retirement) that running enrollments lack.
    gained_lessons: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.lessons_added or self.lessons_updated or self.lessons_retired)


# on_progress(stage, done, total): "plan" while articles are read and split, "import" while written.
ProgressCallback = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    pass


def guide_catalogue(content_dir: Path) -> GuideCatalogue:
    """The follow-up guides of content/guides.toml; without that file, none (references are then
    reported as matching no guide). A file that is there must be valid."""
    path = content_dir / "guides.toml"
    return load_guides(path) if path.exists() else GuideCatalogue(guides=())


def plan_content(content_dir: Path, on_progress: ProgressCallback = no_progress) -> list[CoursePlan]:
    """Read and check all content; raises ArticleError, CourseDefinitionError, GuideCatalogueError."""
    catalogue = guide_catalogue(content_dir)
    definitions = load_course_definitions(content_dir)
    plans = []
    for done, definition in enumerate(definitions, start=1):
        plans.append(plan_course(definition, catalogue))
        on_progress("plan", done, len(definitions))
    return plans


def lesson_body(planned: PlannedLesson) -> LessonBody:
    """What a reader gets: the lesson's shown blocks with guide links written in, and its references."""
    return LessonBody(blocks=planned.body, references=tuple(StoredReference.of(ref) for ref in planned.found))


def _content_hash(title: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([title, body], sort_keys=True).encode()).hexdigest()


def import_course(session: Session, plan: CoursePlan, *, now: datetime) -> CourseImport:
    definition = plan.definition
    result = CourseImport(slug=definition.slug)
    result.unmatched_references = [ref.text for ref in plan.unmatched_references]
    course = session.scalars(select(Course).where(Course.slug == definition.slug)).first()
    if course is not None and course.origin == "admin" and definition.articles:
        # Made in the web admin (course.content.uploaded): a course file of the same slug must not
        # take it over. (The admin's own writes plan no article files.)
        raise CourseDefinitionError(
            f"course {definition.slug!r} is managed in the web admin; rename content/courses/{definition.slug}.toml"
        )
    if course is None:
        course = Course(slug=definition.slug, created_at=now, updated_at=now)
        session.add(course)
        result.created = True
    fields = {
        "title": definition.title,
        "description": definition.description,
        "days_between_lessons": definition.days_between_lessons,
        "send_time": definition.send_time,
        "weekday_mask": weekday_mask(definition.weekdays),
        "sender_name": definition.sender_name,
        "sender_email": definition.sender_email,
        "target_words": definition.target_words,
        "language": definition.language,
        "provider": definition.provider or None,
    }
    if any(getattr(course, name) != value for name, value in fields.items()):
        for name, value in fields.items():
            setattr(course, name, value)
        course.updated_at = now
    session.flush()
    result.course_id = course.id

    existing = {lesson.position: lesson for lesson in session.scalars(select(Lesson).where(Lesson.course_id == course.id))}
    appeared = False
    for planned in plan.lessons:
        body = lesson_body(planned).to_json()
        digest = _content_hash(planned.plan.title, body)
        lesson = existing.get(planned.position)
        if lesson is None:
            session.add(
                Lesson(
                    course_id=course.id,
                    position=planned.position,
                    title=planned.plan.title,
                    body=body,
                    words=planned.plan.words,
                    reading_minutes=planned.plan.reading_minutes,
                    content_hash=digest,
                    updated_at=now,
                )
            )
            result.lessons_added += 1
            appeared = True
        elif lesson.content_hash != digest or lesson.retired_at is not None:
            appeared = appeared or lesson.retired_at is not None
            lesson.title = planned.plan.title
            lesson.body = body
            lesson.words = planned.plan.words
            lesson.reading_minutes = planned.plan.reading_minutes
            lesson.content_hash = digest
            lesson.retired_at = None
            lesson.updated_at = now
            result.lessons_updated += 1
        else:
            result.lessons_unchanged += 1
    gone = [l for pos, l in existing.items() if pos > len(plan.lessons) and l.retired_at is None]
    for lesson in gone:
        lesson.retired_at = now
        lesson.updated_at = now
    result.lessons_retired = len(gone)
    session.flush()
    result.deliveries_cancelled = cancel_lesson_rows(session, [lesson.id for lesson in gone])
    result.gained_lessons = appeared and not result.created
    catalogue_changed()
    return result


@dataclass(frozen=True)
class LessonChanges:
    """What importing `plan` would do to its course's lessons, by position (nothing is written)."""

    slug: str
    new_course: bool
    added: tuple[int, ...]
    edited: tuple[int, ...]
    removed: tuple[int, ...]
    edited_ids: tuple[int, ...] = ()  # the stored lessons of `edited` and `removed`, for the audience's counts
    removed_ids: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.new_course or self.added or self.edited or self.removed)


def planned_changes(session: Session, plan: CoursePlan) -> LessonChanges:
    """Compare a plan with the stored lessons as import_course would: a lesson whose title or body
    differs is edited, a position past the plan's end is removed, a new position (or a retired one
    coming back) is added."""
    course = session.scalars(select(Course).where(Course.slug == plan.definition.slug)).first()
    if course is None:
        return LessonChanges(plan.definition.slug, True, tuple(lesson.position for lesson in plan.lessons), (), ())
    existing = {lesson.position: lesson for lesson in session.scalars(select(Lesson).where(Lesson.course_id == course.id))}
    added, edited, edited_ids = [], [], []
    for planned in plan.lessons:
        lesson = existing.get(planned.position)
        if lesson is None or lesson.retired_at is not None:
            added.append(planned.position)
        elif lesson.content_hash != _content_hash(planned.plan.title, lesson_body(planned).to_json()):
            edited.append(planned.position)
            edited_ids.append(lesson.id)
    gone = [lesson for position, lesson in sorted(existing.items()) if position > len(plan.lessons) and lesson.retired_at is None]
    return LessonChanges(
        plan.definition.slug, False, tuple(added), tuple(edited), tuple(lesson.position for lesson in gone),
        tuple(edited_ids), tuple(lesson.id for lesson in gone),
    )  # fmt: skip
