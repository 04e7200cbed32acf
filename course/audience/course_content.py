"""Import content and bring the running enrollments along: course.content.importer writes courses
and lessons (and cancels the rows of retired lessons); then every existing course that gained
lessons gets them scheduled for its running enrollments (course.audience.enrollment). This is what
`course import`, `course init` and `course run` call; it sits in audience/ because content/ knows
nothing of subscribers or sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.audience.enrollment import extend_enrollments
from course.content.definition import CoursePlan
from course.content.importer import CourseImport, LessonChanges, ProgressCallback, import_course, no_progress, plan_content, planned_changes
from course.content.course_feeds import Fetch, fetch_feed, new_entry_articles
from course.content.guides import GuideCatalogue
from course.content.uploaded import UploadedArticle, append_article, plan_appended, stored_uploads
from course.models import OPEN_DELIVERY_STATES, Course, Delivery, Enrollment, EnrollmentStatus


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


@dataclass(frozen=True)
class FeedPoll:
    slug: str
    not_modified: bool = False  # the server answered 304
    lessons_added: int = 0
    articles_added: int = 0


def poll_course_feed(
    session: Session, course: Course, *, fetch: Fetch = fetch_feed, catalogue: GuideCatalogue, now: datetime
) -> FeedPoll:
    """1. Fetch the course's feed with the validators of the last answer (a 304 changes nothing).
    2. Each entry the course has not seen (by id), oldest first, is appended as an article through
       the same plan and import as an uploaded one, and its lessons scheduled for running readers.
    3. The new validators and the time of the check are kept on the course."""
    if not course.feed_url:
        return FeedPoll(course.slug)
    answer = fetch(course.feed_url, course.feed_etag, course.feed_last_modified)
    course.feed_etag, course.feed_last_modified, course.feed_checked_at = answer.etag, answer.last_modified, now
    if answer.data is None:
        return FeedPoll(course.slug, not_modified=True)
    seen = {upload.entry_id for upload in stored_uploads(session, course.id) if upload.entry_id}
    lessons = articles = 0
    for upload in new_entry_articles(answer.data, course.feed_url, course.slug, seen):
        result = add_article(session, course, upload, plan_appended(session, course, upload, catalogue), now=now)
        lessons += result.lessons_added
        articles += 1
    return FeedPoll(course.slug, lessons_added=lessons, articles_added=articles)


def feed_courses(session: Session) -> list[Course]:
    """The admin courses that follow a feed."""
    return list(session.scalars(select(Course).where(Course.feed_url.is_not(None)).order_by(Course.id)))


@dataclass(frozen=True)
class ImportPreview:
    """`course import` of one course, before it runs: its lesson changes and the readers each touches.
    The rule in place: nobody gets a lesson twice; an edit reaches only readers who have not
    received that lesson; a removed lesson's unsent rows are cancelled; running readers get added ones."""

    changes: LessonChanges
    readers_getting_edits: int  # readers with an unsent row of an edited lesson
    readers_losing_removed: int  # readers with an unsent row of a removed lesson
    readers_getting_added: int  # active enrollments, who get the added lessons at once (paused ones when they resume)


def preview_import(session: Session, content_dir: Path) -> list[ImportPreview]:
    """What `course import` would change, course by course (reads only; raises as the import would)."""
    previews = []
    for plan in plan_content(content_dir):
        changes = planned_changes(session, plan)
        course_id = session.scalar(select(Course.id).where(Course.slug == plan.definition.slug))

        def readers_with_open_rows(lesson_ids: tuple[int, ...]) -> int:
            if not lesson_ids:
                return 0
            return session.scalar(
                select(func.count(func.distinct(Delivery.subscriber_id))).where(
                    Delivery.lesson_id.in_(lesson_ids), Delivery.state.in_(OPEN_DELIVERY_STATES)
                )
            ) or 0

        running = 0
        if course_id is not None and changes.added:
            running = session.scalar(
                select(func.count()).select_from(Enrollment).where(
                    Enrollment.course_id == course_id,
                    Enrollment.status == EnrollmentStatus.ACTIVE,
                )
            ) or 0
        previews.append(
            ImportPreview(changes, readers_with_open_rows(changes.edited_ids), readers_with_open_rows(changes.removed_ids), running)
        )
    return previews
