"""Import content and bring the running enrollments along: course.content.importer writes courses
and lessons (and cancels the rows of retired lessons); then every existing course that gained
lessons gets them scheduled for its running enrollments (course.audience.enrollment). This is what
`course import`, `course init` and `course run` call; it sits in audience/ because content/ knows
nothing of subscribers or sending."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from course.audience.enrollment import extend_enrollments
from course.content.definition import CoursePlan
from course.content.importer import CourseImport, ProgressCallback, import_course, no_progress, plan_content
from course.content.uploaded import UploadedArticle, append_article
from course.models import Course


def import_content(
    session: Session, content_dir: Path, *, now: datetime, on_progress: ProgressCallback = no_progress
) -> list[CourseImport]:
    """1. Read and check all content (raises before anything is written).
    2. Write each course and its lessons.
    3. A course that gained lessons extends its running enrollments with them."""
    plans = plan_content(content_dir, on_progress)
    results = []
    for done, plan in enumerate(plans, start=1):
        result = import_course(session, plan, now=now)
        if result.gained_lessons:
            result.enrollments_extended = extend_enrollments(session, result.course_id, now=now)
        results.append(result)
        on_progress("import", done, len(plans))
    return results


def add_article(session: Session, course: Course, upload: UploadedArticle, plan: CoursePlan, *, now: datetime) -> CourseImport:
    """An article appended to an admin course (course.content.uploaded.append_article), and its new
    lessons scheduled for the course's running enrollments, as `course import` does for a file."""
    result = append_article(session, course, upload, plan, now=now)
    if result.gained_lessons:
        result.enrollments_extended = extend_enrollments(session, result.course_id, now=now)
    return result
