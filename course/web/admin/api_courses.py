"""The admin JSON API for courses: the list, one course with its lessons and readers, and its
funnel as JSON or CSV. Every route needs an API token with the viewer role at least."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from course.audience.course_stats import CourseReaders, Funnel, course_funnel, course_readers, next_sends
from course.content.catalogue import find_course, list_courses, live_lessons
from course.delivery.render import course_language
from course.models import Course
from course.web.admin.api import ErrorOut
from course.web.admin.auth import SiteDep, ViewerToken
from course.web.admin.courses import schedule_of

_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "no valid API token"},
    403: {"model": ErrorOut, "description": "the token's role is too low"},
}
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "no such course"}}
router = APIRouter(prefix="/api/admin/courses", tags=["admin"], responses=_RESPONSES)
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
    readers: int


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


def _course(course: Course, lesson_count: int, readers: CourseReaders, session: object) -> dict[str, object]:
    return {
        "slug": course.slug, "title": course.title, "description": course.description,
        "language": course_language(course), "lessons": lesson_count,
        "days_between_lessons": course.days_between_lessons, "send_time": course.send_time.strftime("%H:%M"),
        "weekdays": sorted(course.weekdays), "schedule": schedule_of(course),
        "sender_name": course.sender_name, "sender_email": course.sender_email, "target_words": course.target_words,
        "readers": _readers(readers),
        "next_sends": [
            NextSendOut(lesson=due.position, title=due.title, first_due_at=due.first_due_at, readers=due.readers)
            for due in next_sends(session, course.id)  # type: ignore[arg-type]
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
