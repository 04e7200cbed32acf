"""The admin JSON API for courses: the list, one course with its lessons and readers, and its
funnel as JSON or CSV (viewer tokens); the split plan of an uploaded article, and publishing a
course from one (editor tokens), on the same code as the admin's page and `course import`."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from course.audience.course_stats import CourseReaders, Funnel, course_funnel, course_readers, next_sends
from course.content.article import ArticleError
from course.content.catalogue import find_course, list_courses, live_lessons
from course.content.definition import CourseDefinitionError, CoursePlan
from course.content.course_feeds import FeedAnswer
from course.content.feeds import FeedError
from course.content.guides import GuideCatalogueError
from course.content.importer import guide_catalogue
from course.content.uploaded import UploadedArticle, definition_from_form, plan_summary, plan_uploads, publish_course, read_upload
from course.delivery.render import course_language
from course.models import Course
from course.web.admin.api import ErrorOut
from course.web.admin.auth import EditorToken, SiteDep, ViewerToken
from course.web.admin.course_new import feed_articles
from course.web.admin.courses import schedule_of

RESPONSES: dict[int | str, dict[str, object]] = {
    # What any request may get before a route sees it (course.web.security), as on every admin route.
    400: {"model": ErrorOut, "description": "a control character in the path, the query or a body field"},
    413: {"model": ErrorOut, "description": "a body larger than the admin's limit (1 MB by default)"},
    401: {"model": ErrorOut, "description": "no valid API token"},
    403: {"model": ErrorOut, "description": "the token's role is too low"},
}
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "no such course"}}
router = APIRouter(prefix="/api/admin/courses", tags=["admin"], responses=RESPONSES)
Slug = Annotated[str, Path(min_length=1, max_length=100)]


class ReadersOut(BaseModel):
    enrolled: int = Field(description="every enrollment, unconfirmed ones included")
    pending: int = Field(description="not yet confirmed")
    active: int
    paused: int
    finished: int
    unsubscribed: int


class NextSendOut(BaseModel):
    lesson: int = Field(description="the lesson's position, from 1")
    title: str
    first_due_at: datetime
    readers: int = Field(description="readers waiting for the lesson; with more_readers, a floor (the count stops there)")
    more_readers: bool = Field(False, description="more readers than `readers` are waiting")


class CourseOut(BaseModel):
    slug: str
    title: str
    description: str
    language: str
    lessons: int = Field(description="live lessons")
    days_between_lessons: int
    send_time: str = Field(description="HH:MM in each reader's own time zone")
    weekdays: list[int] = Field(description="0 = Monday")
    schedule: str = Field(description="the schedule in words")
    sender_name: str
    sender_email: str
    target_words: int
    readers: ReadersOut
    next_sends: list[NextSendOut]


class LessonOut(BaseModel):
    position: int
    title: str
    words: int
    reading_minutes: int


class CourseDetailOut(CourseOut):
    lesson_list: list[LessonOut]


class PlanLessonOut(BaseModel):
    position: int
    title: str
    source: str = Field(description="the article it comes from")
    words: int
    minutes: int
    blocks: list[str] = Field(description="each block's kind: heading, paragraph, list, quote, code, table, image, rule")
    guide_links: list[dict[str, str]] = Field(description="references found that link to a guide: text, guide key, url")
    unmatched_references: list[str] = Field(description="references found that matched no guide")


class PlanOut(BaseModel):
    title: str
    target_words: int
    language: str
    lessons: list[PlanLessonOut]
    unmatched_references: list[str]


class FunnelStepOut(BaseModel):
    step: str = Field(description="enrolled, confirmed, received_N, finished, paused, unsubscribed_after_N, bounced")
    label: str
    readers: int


class FunnelOut(BaseModel):
    slug: str
    steps: list[FunnelStepOut]


def _readers(readers: CourseReaders) -> ReadersOut:
    return ReadersOut(
        enrolled=readers.enrolled, pending=readers.pending, active=readers.active,
        paused=readers.paused, finished=readers.finished, unsubscribed=readers.unsubscribed,
    )  # fmt: skip


def _course(course: Course, lesson_count: int, readers: CourseReaders, session: Session) -> dict[str, object]:
    return {
        "slug": course.slug, "title": course.title, "description": course.description,
        "language": course_language(course), "lessons": lesson_count,
        "days_between_lessons": course.days_between_lessons, "send_time": course.send_time.strftime("%H:%M"),
        "weekdays": sorted(course.weekdays), "schedule": schedule_of(course),
        "sender_name": course.sender_name, "sender_email": course.sender_email, "target_words": course.target_words,
        "readers": _readers(readers),
        "next_sends": [
            NextSendOut(lesson=due.position, title=due.title, first_due_at=due.first_due_at, readers=due.readers, more_readers=due.more)
            for due in next_sends(session, course.id)
        ],
    }  # fmt: skip


@router.get("", response_model=list[CourseOut])
def list_all(site: SiteDep, actor: ViewerToken) -> list[CourseOut]:
    """Every course by title, with its schedule, readers by state and next sends due."""
    with site.sessions.begin() as session:
        listings = list_courses(session)
        readers = course_readers(session, [listing.course.id for listing in listings])
        return [
            CourseOut(**_course(listing.course, listing.lesson_count, readers[listing.course.id], session))  # type: ignore[arg-type]
            for listing in listings
        ]


@router.get("/{slug}", response_model=CourseDetailOut, responses=_NOT_FOUND)
def get_one(slug: Slug, site: SiteDep, actor: ViewerToken) -> CourseDetailOut:
    """One course with its live lessons."""
    with site.sessions.begin() as session:
        course = find_course(session, slug)
        if course is None:
            raise HTTPException(404, f"no course {slug!r}")
        lessons = live_lessons(session, course)
        readers = course_readers(session, [course.id])[course.id]
        return CourseDetailOut(
            **_course(course, len(lessons), readers, session),  # type: ignore[arg-type]
            lesson_list=[LessonOut(position=l.position, title=l.title, words=l.words, reading_minutes=l.reading_minutes) for l in lessons],
        )


def funnel_csv(funnel: Funnel) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["step", "label", "readers"])
    writer.writerows(funnel.rows())
    return out.getvalue()


@router.get(
    "/{slug}/funnel",
    response_model=FunnelOut,
    responses={**_NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "the funnel (CSV with ?format=csv)"}},
)
def get_funnel(
    slug: Slug, site: SiteDep, actor: ViewerToken, format: Annotated[Literal["json", "csv"], Query()] = "json"
) -> FunnelOut | Response:
    """Enrolled, confirmed, received each lesson, finished, paused, unsubscribed after each lesson
    (the last lesson they were sent; 0: none), bounced."""
    with site.sessions.begin() as session:
        course = find_course(session, slug)
        if course is None:
            raise HTTPException(404, f"no course {slug!r}")
        funnel = course_funnel(session, course.id)
    if format == "csv":
        return Response(
            funnel_csv(funnel), media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{slug}-funnel.csv"'},
        )  # fmt: skip
    return FunnelOut(slug=slug, steps=[FunnelStepOut(step=key, label=label, readers=value) for key, label, value in funnel.rows()])


# --- a course from an uploaded article ------------------------------------------------------------

_PLAN_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "an article that cannot be read, or a setting refused (the message says which)"},
    409: {"model": ErrorOut, "description": "the slug is taken by another course"},
}


def _refused(exc: Exception) -> JSONResponse:
    status = 409 if "is taken by" in str(exc) else 400
    return JSONResponse({"detail": str(exc), "fields": {}}, status_code=status)


async def _plan(
    site: SiteDep, article: UploadFile | None, feed_url: str, form: dict[str, str], weekdays: list[str]
) -> tuple[list[UploadedArticle], FeedAnswer | None, CoursePlan]:
    """The uploaded article, or else the feed's entries, planned with the form's settings."""
    feed = None
    if article is not None and article.filename:
        uploads = [read_upload(article.filename, await article.read())]
    elif feed_url.strip():
        uploads, feed = await run_in_threadpool(feed_articles, feed_url.strip(), allow_private=site.settings.feed_allow_private_hosts)
    else:
        raise ArticleError("no article: send an `article` file or a `feed_url`")
    definition = definition_from_form(form, weekdays, uploads[0])
    return uploads, feed, plan_uploads(definition, uploads, guide_catalogue(site.settings.content_dir))


Text = Annotated[str, Form()]


ArticleFile = Annotated[UploadFile | None, File(description="a .md, .html, .htm or .txt article (or give feed_url)")]
FeedUrl = Annotated[str, Form(description="a blog's RSS or Atom feed, whose entries are the articles (instead of `article`)")]


@router.post("/plan", response_model=PlanOut, responses=_PLAN_ERRORS)
async def plan(
    site: SiteDep, actor: EditorToken, article: ArticleFile = None, feed_url: FeedUrl = "",
    target_words: Annotated[int, Form(ge=50, le=5000)] = 300, language: Text = "en",
) -> PlanOut | JSONResponse:
    """How the article (or the feed's entries) splits into lessons at this target: titles, blocks,
    guide links found and references that matched no guide. Nothing is saved."""
    form = {"title": "", "slug": "", "description": "", "sender_name": "Plan", "sender_email": "plan@example.org",
            "days_between_lessons": "1", "send_time": "09:00", "language": language, "target_words": str(target_words)}  # fmt: skip
    try:
        _, _, planned = await _plan(site, article, feed_url, form, [])
    except (ArticleError, CourseDefinitionError, GuideCatalogueError, FeedError) as exc:
        return _refused(exc)
    return PlanOut(**plan_summary(planned))  # type: ignore[arg-type]


@router.post("", response_model=CourseDetailOut, status_code=201, responses=_PLAN_ERRORS)
async def publish(
    site: SiteDep, actor: EditorToken, sender_name: Text, sender_email: Text, article: ArticleFile = None, feed_url: FeedUrl = "", slug: Text = "", title: Text = "", description: Text = "",
    target_words: Annotated[int, Form(ge=50, le=5000)] = 300, language: Text = "en",
    days_between_lessons: Annotated[int, Form(ge=1, le=365)] = 1, send_time: Text = "09:00",
    weekdays: Annotated[list[str] | None, Form(description="mon … sun, repeated; none: every day")] = None,
) -> CourseDetailOut | JSONResponse:
    """Publish a course from the article or the feed (the plan as /plan shows it); a blank title is
    the (first) article's, a blank slug the title's. Readers can sign up at once. A course from a
    feed is polled for new entries from then on."""
    form = {"title": title, "slug": slug, "description": description, "sender_name": sender_name,
            "sender_email": sender_email, "days_between_lessons": str(days_between_lessons), "send_time": send_time,
            "language": language, "target_words": str(target_words)}  # fmt: skip
    try:
        uploads, feed, planned = await _plan(site, article, feed_url, form, weekdays or [])
        with site.sessions.begin() as session:
            publish_course(
                session, planned, uploads, content_dir=site.settings.content_dir, now=site.now(),
                feed_url=feed_url.strip() if feed else "",
                feed_etag=feed.etag if feed else None, feed_last_modified=feed.last_modified if feed else None,
            )  # fmt: skip
    except (ArticleError, CourseDefinitionError, GuideCatalogueError, FeedError) as exc:
        return _refused(exc)
    return get_one(planned.definition.slug, site, actor)
