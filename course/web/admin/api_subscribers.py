"""The admin API's subscribers: the list (the same filter as the admin's Subscribers page, as a
query: q, status, tag, course, lesson, from, to, timezone, language; keyset pages through `cursor`) and one
subscriber with tags, enrollments and events. Viewer tokens and up."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from course.audience.directory import MAX_PAGE_SIZE, PAGE_SIZE, DirectoryError, list_subscribers, parse_cursor, parse_filter, subscriber_detail
from course.web.admin.api import ErrorOut, router as _api_router
from course.web.admin.auth import SiteDep, ViewerToken

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=_api_router.responses)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "a filter value or cursor refused: `fields` says which"},
    401: {"model": ErrorOut, "description": "no valid API token"},
    403: {"model": ErrorOut, "description": "the token's role is too low"},
}


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    status: str
    timezone: str
    created_at: datetime
    tags: list[str]
    language: str | None = Field(None, description="en, de or fr; null: not known")


class SubscriberListOut(BaseModel):
    subscribers: list[SubscriberOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class EnrollmentOut(BaseModel):
    course: str = Field(description="the course's slug")
    course_title: str
    status: str
    lessons_sent: int
    lesson_count: int
    send_time: str = Field(description="HH:MM in the subscriber's time zone")
    next_due_at: datetime | None


class EventOut(BaseModel):
    at: datetime
    kind: str = Field(description="an event of the record (signed_up, confirmed, unsubscribed…) or `delivery`")
    summary: str
    actor: str | None = Field(description="the admin who did it; null: the subscriber or the system")
    detail: dict[str, Any]


class SubscriberDetailOut(SubscriberOut):
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    source: str | None = Field(None, description="where they came from: form, api, import:<id>, admin, cli; null: not recorded")
    enrollments: list[EnrollmentOut]
    events: list[EventOut] = Field(description="the timeline, oldest first: the event record and the ledger's deliveries")


def _refused(exc: DirectoryError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "fields": exc.fields}, status_code=400)


@router.get("/subscribers", response_model=SubscriberListOut, responses=_ERRORS)
def api_list_subscribers(
    site: SiteDep,
    actor: ViewerToken,
    q: Annotated[str, Query(max_length=200, description="part of the address or name, any case")] = "",
    status: Annotated[str, Query(max_length=20, description="pending, active, unsubscribed, bounced, complained or erased")] = "",
    tag: Annotated[str, Query(max_length=64)] = "",
    course: Annotated[str, Query(max_length=100, description="enrolled in this course (slug)")] = "",
    lesson: Annotated[int | None, Query(ge=1, le=10_000, description="with `course`: has been sent this lesson or a later one")] = None,
    signed_up_from: Annotated[date | None, Query(alias="from", description="signed up on or after (YYYY-MM-DD, UTC)")] = None,
    signed_up_to: Annotated[date | None, Query(alias="to", description="signed up on or before (YYYY-MM-DD, UTC)")] = None,
    timezone: Annotated[str, Query(max_length=64, description="an IANA time zone")] = "",
    language: Annotated[str, Query(max_length=8, description="en, de or fr; `none`: not known")] = "",
    cursor: Annotated[str, Query(max_length=20, description="`next_cursor` of the page before")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> SubscriberListOut | JSONResponse:
    """Subscribers matching the filter, newest first, one page at a time (keyset: never OFFSET)."""
    params = {
        "q": q, "status": status, "tag": tag, "course": course, "lesson": str(lesson or ""),
        "from": signed_up_from.isoformat() if signed_up_from else "", "to": signed_up_to.isoformat() if signed_up_to else "",
        "timezone": timezone, "language": language,
    }  # fmt: skip
    try:
        chosen = parse_filter(params)
        after = parse_cursor(cursor)
    except DirectoryError as exc:
        return _refused(exc)
    with site.sessions.begin() as session:
        page = list_subscribers(session, chosen, cursor=after, limit=limit)
    return SubscriberListOut(
        subscribers=[
            SubscriberOut(id=row.id, email=row.email, name=row.name, status=row.status, timezone=row.timezone,
                          created_at=row.created_at, tags=list(row.tags), language=row.language)  # fmt: skip
            for row in page.subscribers
        ],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/subscribers/{subscriber_id}", response_model=SubscriberDetailOut,
    responses={**_ERRORS, 404: {"model": ErrorOut, "description": "no such subscriber"}},
)  # fmt: skip
def api_get_subscriber(
    subscriber_id: Annotated[int, Path(ge=1, le=2**63 - 1)], site: SiteDep, actor: ViewerToken
) -> SubscriberDetailOut:
    """One subscriber: profile, status, tags, enrollments with progress, and the timeline."""
    with site.sessions.begin() as session:
        detail = subscriber_detail(session, subscriber_id)
    if detail is None:
        raise HTTPException(404, f"no subscriber with id {subscriber_id}")
    return SubscriberDetailOut(
        id=detail.id, email=detail.email, name=detail.name, status=detail.status, timezone=detail.timezone,
        created_at=detail.created_at, tags=list(detail.tags), confirmed_at=detail.confirmed_at, unsubscribed_at=detail.unsubscribed_at,
        language=detail.language, source=detail.source,
        enrollments=[
            EnrollmentOut(course=e.course_slug, course_title=e.course_title, status=e.status, lessons_sent=e.lessons_sent,
                          lesson_count=e.lesson_count, send_time=e.send_time, next_due_at=e.next_due_at)  # fmt: skip
            for e in detail.enrollments
        ],
        events=[EventOut(at=e.at, kind=e.kind, summary=e.summary, actor=e.actor, detail=e.detail) for e in detail.timeline],
    )  # fmt: skip
