"""Unsubscribe: the page behind an email's unsubscribe link (one button, no change on GET), the
RFC 8058 one-click endpoint that mail providers post to (the same URL), and taking it back.

One click can only ever stop mail. The link never expires and travels with every forwarded mail,
so neither page shows the reader's address or links anywhere personal (no preferences link: that
would be a never-expiring key to the reader's time zone, send time and other courses). The one
thing the unsubscribed page offers is to resubscribe to exactly what that click stopped, for
RESUBSCRIBE_SECONDS of wall-clock time, through a signed `undo` field that names it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from course.audience.enrollment import Stopped, resubscribe, unsubscribe, unsubscribe_in_one, what_unsubscribe_stops
from course.audience.preferences import subscriber_row
from course.delivery.links import LinkPurpose
from course.i18n import N_, translate
from course.models import Course, Enrollment
from course.web.public.forms import SiteDep, TextField, csrf_failed
from course.web.cache import CourseCard
from course.web.security import csrf_is_valid
from course.web.site import PageError, Site, ids_from

# How long an unsubscribe can be taken back: long enough to notice a slip, short enough that the
# undo on a page left open is no lasting key.
RESUBSCRIBE_SECONDS = 15 * 60

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


class UndoError(ValueError):
    """An undo field that was tampered with, made with another secret, or is too old."""


class _WallClockSigner(TimestampSigner):
    """itsdangerous's timestamp signer at a given moment (Unix seconds): an undo is a real-time
    rule, so it runs on the wall clock, not the course calendar's project clock."""

    def __init__(self, *args: Any, now: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.moment = now

    def get_timestamp(self) -> int:
        return int(self.moment)


def _undo_serializer(secret: str, now: float) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="resubscribe", signer=_WallClockSigner, signer_kwargs={"now": now})


def sign_undo(secret: str, payload: list[Any], *, now: float) -> str:
    return _undo_serializer(secret, now).dumps(payload)


def read_undo(secret: str, token: str, *, now: float) -> list[Any]:
    try:
        payload = _undo_serializer(secret, now).loads(token, max_age=RESUBSCRIBE_SECONDS)
    except BadData as exc:
        raise UndoError(str(exc)) from None
    if not isinstance(payload, list) or len(payload) != 5:
        raise UndoError("not an undo of ours")
    return payload


def _undo_field(site: Site, subscriber_id: int, course_id: int | None, stopped: Stopped) -> str:
    """The signed undo for one unsubscribe: whose, which link, and what it stopped."""
    moment = stopped.subscriber_at.isoformat() if stopped.subscriber_at else ""
    payload = [subscriber_id, course_id or 0, list(stopped.active), list(stopped.paused), moment]
    return sign_undo(site.settings.secret_key, payload, now=time.time())


def _stopped_from(payload: list[Any], subscriber_id: int, course_id: int | None) -> Stopped:
    who, which, active, paused, moment = payload
    if who != subscriber_id or which != (course_id or 0):
        raise UndoError("the undo is for another link")
    try:
        return Stopped(
            active=tuple(int(i) for i in active),
            paused=tuple(int(i) for i in paused),
            subscriber_at=datetime.fromisoformat(moment) if moment else None,
        )
    except (TypeError, ValueError):
        raise UndoError("not an undo of ours") from None


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
    now = site.now()
    if site.autocommit is not None:
        with site.autocommit.connect() as connection:
            email, stopped = unsubscribe_in_one(connection, subscriber_id, course_id=course_id, now=now)
        if course is not None or email is None:
            language = course.language if course is not None else site.settings.site_language
        else:
            with site.reading() as session:
                language = subscriber_language(site, session, subscriber_id, None)
    else:
        with site.sessions.begin() as session:
            subscriber = subscriber_row(session, subscriber_id)
            stopped = Stopped()
            if subscriber is not None:
                stopped = what_unsubscribe_stops(session, subscriber_id, course_id=course_id, now=now)
                unsubscribe(session, subscriber, course_id=course_id, now=now)
            language = subscriber_language(site, session, subscriber_id if subscriber else None, course)
    # No address and no preferences link: whoever holds the link may stop mail, nothing more.
    return site.page(
        request,
        "unsubscribed.html",
        course=course,
        language=language,
        undo=_undo_field(site, subscriber_id, course_id, stopped) if stopped.anything else "",
        resubscribe_action=f"/u/{token}/resubscribe",
        undo_minutes=RESUBSCRIBE_SECONDS // 60,
    )


@router.post("/u/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe_submit(token: str, request: Request, site: SiteDep, undo: TextField = "", csrf_token: TextField = "") -> HTMLResponse:
    """Take one unsubscribe back: the undo field of the page that unsubscribe answered with (signed,
    for this link, RESUBSCRIBE_SECONDS old at most) names what it stopped; resubscribe() restores
    exactly that, and only while nothing has changed since."""
    subscriber_id, course_id = _unsubscribe_ids(site, token)
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise csrf_failed()
    course = site.catalogue.course_by_id(course_id) if course_id else None
    language = course.language if course is not None else site.settings.site_language
    try:
        stopped = _stopped_from(read_undo(site.settings.secret_key, undo, now=time.time()), subscriber_id, course_id)
    except UndoError:
        raise PageError(
            400, N_("Nothing to take back"), N_("An unsubscribe can be taken back only on its own page, for a few minutes."),
            language=language,
        ) from None  # fmt: skip
    with site.sessions.begin() as session:
        restored = resubscribe(session, subscriber_id, stopped, now=site.now())
    if restored:
        title, message = N_("You are resubscribed"), N_("We send you again what you had just unsubscribed from.")
    else:
        title, message = N_("Nothing to take back"), N_("This was taken back already, or something changed since.")
    return site.page(
        request, "message.html", title=translate(language, title), message=translate(language, message), language=language
    )
