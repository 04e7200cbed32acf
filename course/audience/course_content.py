"""Import content and bring the running enrollments along: course.content.importer writes courses
and lessons (and cancels the rows of retired lessons); then every existing course that gained
lessons gets them scheduled for its running enrollments (course.audience.enrollment). This is what
`course import`, `course init` and `course run` call; it sits in audience/ because content/ knows
nothing of subscribers or sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from course.audience.enrollment import extend_enrollments
from course.content.definition import CoursePlan
from course.content.importer import CourseImport, ProgressCallback, import_course, no_progress, plan_content
from course.content.course_feeds import Fetch, fetch_feed, new_entry_articles
from course.content.guides import GuideCatalogue
from course.content.uploaded import UploadedArticle, append_article, plan_appended, stored_uploads
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
