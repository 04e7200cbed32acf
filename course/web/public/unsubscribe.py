"""Unsubscribe: the page behind an email's unsubscribe link (one button, no change on GET) and the
RFC 8058 one-click endpoint that mail providers post to, which are the same URL."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from course.audience.enrollment import unsubscribe, unsubscribe_in_one
from course.audience.preferences import subscriber_row
from course.delivery.links import LinkPurpose
from course.models import Course, Enrollment
from course.web.public.forms import SiteDep
from course.web.cache import CourseCard
from course.web.site import Site, ids_from

router = APIRouter(include_in_schema=False)


def subscriber_language(site: Site, session: Session, subscriber_id: int | None, course: CourseCard | None) -> str:
    """The course's language when the link is about one course; for "all email", the one language
    all the subscriber's courses share, else the site's (also when there is no such subscriber)."""
    if course is not None:
        return course.language
    if subscriber_id is None:
        return site.settings.site_language
    # One statement however many courses: the page costs the same for a reader in one or in ten.
    languages = session.scalars(
        select(Course.language).join(Enrollment, Enrollment.course_id == Course.id)
        .where(Enrollment.subscriber_id == subscriber_id).distinct().limit(2)
    ).all()
    return languages[0] if len(languages) == 1 else site.settings.site_language


def _unsubscribe_ids(site: Site, token: str) -> tuple[int, int | None]:
    ids = ids_from(site.read_link(LinkPurpose.UNSUBSCRIBE, token), required=1, optional=1, nullable_tail=True)
    subscriber_id = ids[0]
    assert subscriber_id is not None
    return subscriber_id, ids[1] if len(ids) > 1 else None


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """One button and no change: link scanners fetch every URL in a message."""
    subscriber_id, course_id = _unsubscribe_ids(site, token)
    # Before the request's own session: a cache miss takes a pooled connection of its own.
    course = site.catalogue.course_by_id(course_id) if course_id else None
    with site.reading() as session:
        subscriber = subscriber_row(session, subscriber_id)
        return site.page(
            request,
            "unsubscribe.html",
            email=subscriber.email if subscriber else None,
            course=course,
            language=subscriber_language(site, session, subscriber.id if subscriber else None, course),
            action=f"/u/{token}",
        )


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe_submit(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The RFC 8058 one-click endpoint (the List-Unsubscribe URL) and the page's button alike.
    No CSRF token and no cookie: mail providers post `List-Unsubscribe=One-Click` from their
    servers. Only the signed link decides, and unsubscribing twice is harmless.
    On PostgreSQL the change is one statement in autocommit (unsubscribe_in_one); the page's
    language for "all email" is one more read."""
    subscriber_id, course_id = _unsubscribe_ids(site, token)
    # Before the request's own connection: a cache miss takes a pooled connection of its own.
    course = site.catalogue.course_by_id(course_id) if course_id else None
    if site.autocommit is not None:
        with site.autocommit.connect() as connection:
            email = unsubscribe_in_one(connection, subscriber_id, course_id=course_id, now=site.now())
        if course is not None or email is None:
            language = course.language if course is not None else site.settings.site_language
        else:
            with site.reading() as session:
                language = subscriber_language(site, session, subscriber_id, None)
    else:
        with site.sessions.begin() as session:
            subscriber = subscriber_row(session, subscriber_id)
            email = subscriber.email if subscriber else None
            if subscriber is not None:
                unsubscribe(session, subscriber, course_id=course_id, now=site.now())
            language = subscriber_language(site, session, subscriber_id if subscriber else None, course)
    return site.page(
        request,
        "unsubscribed.html",
        email=email,
        course=course,
        language=language,
        preferences_url=site.signer.url(LinkPurpose.PREFERENCES, subscriber_id, *([course_id] if course_id else [])),
    )
