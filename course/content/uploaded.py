"""A course published from the web admin: articles uploaded rather than kept under content/, read,
split and linked by the same code as `course import` (article.parse_article, definition.plan_articles,
importer.import_course), one code path with two entry points.

1. `read_upload` reads an uploaded file (Markdown, HTML or plain text, by its name) into an Article.
2. `plan_uploads` plans the course's lessons; `plan_summary` is that plan as the admin and the API
   show it (lessons, titles, blocks, guide links found, references that matched no guide); nothing
   is written.
3. `publish_course` writes it: the course (origin "admin"), its lessons, and the uploaded sources.

A course kept as files stays the files' (`course import`); one made here is the admin's, and
`course import` leaves it alone (importer.import_course refuses to touch it), so the two never fight."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from course.content.article import Article, ArticleError, article_format, parse_article
from course.content.blocks import block_to_dict
from course.content.catalogue import catalogue_changed
from course.content.definition import (
    WEEKDAY_NAMES,
    CourseDefinition,
    CourseDefinitionError,
    CoursePlan,
    definition_from_fields,
    plan_articles,
)
from course.content.guides import GuideCatalogue
from course.content.importer import CourseImport, guide_catalogue, import_course
from course.models import Course, CourseArticle, Enrollment, weekday_mask

RESERVED_SLUGS = frozenset({"new"})  # /admin/courses/new is the admin's page for a new course
ADMIN_ORIGIN = "admin"
FILES_ORIGIN = "files"
MAX_ARTICLE_BYTES = 512 * 1024  # a long article is ~100 KB of Markdown; the admin's request limit is 1 MB


@dataclass(frozen=True)
class UploadedArticle:
    filename: str  # its name says its format: .md, .markdown, .html, .htm, .txt, .text
    text: str
    entry_id: str = ""  # a feed entry's id, when the article is one (course.content.course_feeds)


def read_upload(filename: str, raw: bytes) -> UploadedArticle:
    """Check an uploaded file's name and bytes and decode it (UTF-8, BOM fine; an HTML page may
    declare another charset). Raises ArticleError naming the file."""
    name = Path(filename or "").name[:255]
    if not name:
        raise ArticleError("no article: choose a Markdown, HTML or plain-text file")
    fmt = article_format(Path(name))
    if len(raw) > MAX_ARTICLE_BYTES:
        raise ArticleError(f"{name}: {len(raw):,} bytes; an article may have {MAX_ARTICLE_BYTES:,} at most")
    nul_offset = raw.find(b"\x00")
    if nul_offset >= 0:
        raise ArticleError(f"{name}: binary file (NUL byte at offset {nul_offset}), not an article")
    if fmt == "html":
        from course.content.html_reader import decode_html

        return UploadedArticle(name, decode_html(raw, name))
    try:
        return UploadedArticle(name, raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ArticleError(f"{name}: not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start})") from exc


def parse_upload(upload: UploadedArticle) -> Article:
    return parse_article(upload.text, source=upload.filename, fmt=article_format(Path(upload.filename)))


def plan_uploads(definition: CourseDefinition, uploads: Sequence[UploadedArticle], catalogue: GuideCatalogue) -> CoursePlan:
    """The lessons the uploads make, in order; raises ArticleError for an article that cannot be read."""
    if not uploads:
        raise ArticleError("no article: choose a Markdown, HTML or plain-text file")
    return plan_articles(definition, [parse_upload(upload) for upload in uploads], catalogue)


def slug_of(title: str) -> str:
    """A course address from its title: "Pâte à choux, step by step" -> "pate-a-choux-step-by-step"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:100].rstrip("-")


def course_fields(form: dict[str, str], weekdays: list[str]) -> dict[str, object]:
    """The form as a course definition's keys (numbers as numbers, so the validators say what is wrong)."""
    fields: dict[str, object] = {
        key: form[key].strip() for key in ("title", "description", "sender_name", "sender_email", "send_time", "language")
    }
    for key in ("days_between_lessons", "target_words"):
        value = form[key].strip()
        fields[key] = int(value) if value.isdigit() else value
    fields["weekdays"] = [day for day in weekdays if day in WEEKDAY_NAMES] or "everyday"
    return fields


def definition_from_form(form: dict[str, str], weekdays: list[str], upload: UploadedArticle) -> CourseDefinition:
    """The definition a form describes (the admin's page, the API's multipart body): a blank title is
    the article's (`form` is updated with it), a blank slug the title's."""
    if not form["title"].strip():
        form["title"] = parse_upload(upload).title
    if not form["slug"].strip():
        form["slug"] = slug_of(form["title"])
    slug = form["slug"].strip()
    if slug in RESERVED_SLUGS:
        raise CourseDefinitionError(f"the slug {slug!r} is reserved: choose another")
    target = form["target_words"].strip()
    if target.isdigit() and not 50 <= int(target) <= 5000:
        raise CourseDefinitionError(f"target words must be between 50 and 5,000, got {target}")
    return definition_from_fields(slug, course_fields(form, weekdays), where="the new course")


def plan_summary(plan: CoursePlan) -> dict[str, Any]:
    """The plan as shown before anything is saved: each lesson's title, words, minutes, blocks (kind,
    heading level) and the guide references found in it (the guide's key, or None when none matched)."""
    return {
        "title": plan.definition.title,
        "target_words": plan.definition.target_words,
        "language": plan.definition.language,
        "lessons": [
            {
                "position": lesson.position,
                "title": lesson.plan.title,
                "source": lesson.article_source,
                "words": lesson.plan.words,
                "minutes": lesson.plan.reading_minutes,
                "blocks": [block_to_dict(block)["kind"] for block in lesson.body],
                "guide_links": [
                    {"text": ref.text, "guide": ref.guide.key, "url": ref.guide.url} for ref in lesson.found if ref.guide
                ],
                "unmatched_references": [ref.text for ref in lesson.found if ref.guide is None],
            }
            for lesson in plan.lessons
        ],
        "unmatched_references": [ref.text for ref in plan.unmatched_references],
    }


def publish_course(
    session: Session, plan: CoursePlan, uploads: Sequence[UploadedArticle], *, content_dir: Path, now: datetime,
    feed_url: str = "", feed_etag: str | None = None, feed_last_modified: str | None = None,
) -> CourseImport:
    """Write a new admin course: its settings and lessons (importer.import_course, as `course import`
    does) and the uploaded sources (with `feed_url`, the feed entries it was made from, and the
    validators of the answer they came in, for the polls to come). A slug already taken, by a course in the database or a course
    file under content/courses/, is refused before anything is written."""
    slug = plan.definition.slug
    if session.scalar(select(Course.id).where(Course.slug == slug)) is not None:
        raise CourseDefinitionError(f"the slug {slug!r} is taken by another course: choose another")
    if (content_dir / "courses" / f"{slug}.toml").exists():
        raise CourseDefinitionError(f"the slug {slug!r} is taken by content/courses/{slug}.toml: choose another")
    result = import_course(session, plan, now=now)
    course = session.get(Course, result.course_id)
    assert course is not None
    course.origin = ADMIN_ORIGIN
    if feed_url:  # a course from a feed: polled from now on, conditionally on what this fetch got
        course.feed_url, course.feed_etag, course.feed_last_modified, course.feed_checked_at = (
            feed_url, feed_etag, feed_last_modified, now
        )
    session.add_all(
        CourseArticle(
            course_id=course.id, position=position, filename=upload.filename, text=upload.text, added_at=now,
            entry_id=upload.entry_id or None,
        )
        for position, upload in enumerate(uploads, start=1)
    )
    session.flush()
    return result


# --- an admin course after it is published ------------------------------------------------------


class NotTheAdmins(CourseDefinitionError):
    """The course is kept as files under content/: the admin only reads it."""


def _admins(course: Course) -> None:
    if course.origin != ADMIN_ORIGIN:
        raise NotTheAdmins(
            f"{course.title!r} is kept as files (content/courses/{course.slug}.toml): edit the file, then run course import"
        )


SETTING_KEYS = ("title", "description", "sender_name", "sender_email", "days_between_lessons", "send_time", "language")


def course_form(course: Course) -> dict[str, str]:
    """A course's settings as the settings form shows them."""
    return {
        "title": course.title, "description": course.description, "sender_name": course.sender_name,
        "sender_email": course.sender_email, "days_between_lessons": str(course.days_between_lessons),
        "send_time": course.send_time.strftime("%H:%M"), "language": course.language, "target_words": str(course.target_words),
        "slug": course.slug,
    }  # fmt: skip


def _definition_of(course: Course, form: dict[str, str], weekdays: list[str]) -> CourseDefinition:
    return definition_from_fields(course.slug, course_fields(form, weekdays), where=f"course {course.slug}")


def change_settings(session: Session, course: Course, form: dict[str, str], weekdays: list[str], *, now: datetime) -> None:
    """Title, description, sender, schedule and language of an admin course, checked as a course
    file's keys are. The target words stay (a new target would cut the lessons anew). The schedule
    applies to lessons scheduled from now on (new readers, resumed ones); rows already due keep their time."""
    _admins(course)
    definition = _definition_of(course, {**course_form(course), **{key: form.get(key, "") for key in SETTING_KEYS}}, weekdays)
    fields = {
        "title": definition.title, "description": definition.description, "sender_name": definition.sender_name,
        "sender_email": definition.sender_email, "days_between_lessons": definition.days_between_lessons,
        "send_time": definition.send_time, "weekday_mask": weekday_mask(definition.weekdays), "language": definition.language,
    }  # fmt: skip
    for name, value in fields.items():
        setattr(course, name, value)
    course.updated_at = now
    session.flush()
    catalogue_changed()


def course_articles(session: Session, course_id: int) -> list[CourseArticle]:
    """The articles an admin course was made of, in order, with when each arrived."""
    return list(session.scalars(select(CourseArticle).where(CourseArticle.course_id == course_id).order_by(CourseArticle.position)))


def stored_uploads(session: Session, course_id: int) -> list[UploadedArticle]:
    return [
        UploadedArticle(article.filename, article.text, article.entry_id or "")
        for article in session.scalars(select(CourseArticle).where(CourseArticle.course_id == course_id).order_by(CourseArticle.position))
    ]


def plan_appended(session: Session, course: Course, upload: UploadedArticle, catalogue: GuideCatalogue) -> CoursePlan:
    """The course's plan with `upload` after its articles: the same split as at publishing for the
    articles it has (same target and language), so only the new article's lessons are new."""
    _admins(course)
    definition = _definition_of(course, course_form(course), [WEEKDAY_NAMES[day] for day in sorted(course.weekdays)])
    return plan_uploads(definition, [*stored_uploads(session, course.id), upload], catalogue)


def append_article(session: Session, course: Course, upload: UploadedArticle, plan: CoursePlan, *, now: datetime) -> CourseImport:
    """Write `plan` (from plan_appended) through the importer and keep the new source. Scheduling the
    new lessons for running enrollments is the audience's (course.audience.course_content)."""
    _admins(course)
    result = import_course(session, plan, now=now)
    position = len(stored_uploads(session, course.id)) + 1
    session.add(
        CourseArticle(
            course_id=course.id, position=position, filename=upload.filename, text=upload.text, added_at=now,
            entry_id=upload.entry_id or None,
        )
    )
    session.flush()
    return result


def delete_course(session: Session, course: Course) -> None:
    """An admin course that nobody ever enrolled in, with its lessons and sources. One with readers
    is kept: their enrollments and the mail they were sent are its history."""
    _admins(course)
    if session.scalar(select(func.count()).select_from(Enrollment).where(Enrollment.course_id == course.id)):
        raise CourseDefinitionError(f"{course.title!r} has readers: a course with readers is kept (their history is in it)")
    # Lessons and sources go by their foreign keys' ON DELETE CASCADE; no delivery row names a lesson
    # of a course nobody enrolled in (a lesson test names it by a bare id, and is then not sent).
    session.execute(delete(Course).where(Course.id == course.id))
    session.expunge(course)
    catalogue_changed()
