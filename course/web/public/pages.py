"""The HTML pages: course list, course page with the signup form, the embeddable form, confirm,
preferences, unsubscribe and "view in browser". Hidden from the OpenAPI schema (only the JSON API
is described there). Each handler: read the signed link or the form, call course.subscriptions or
course.enrollment in one transaction, render a page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from zoneinfo import available_timezones
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.audience.enrollment import pause, resume, unsubscribe
from course.delivery.links import LinkPurpose
from course.models import (
    Campaign,
    Course,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberStatus,
)
from course.delivery.render import greeting_for
from course.audience.schedule import UnknownTimeZone, parse_timezone
from course.audience.subscriptions import (
    ConfirmOutcome,
    change_send_time,
    change_timezone,
    check_signup,
    confirm,
    send_next_now,
)
from course.web.security import EMAIL_VIEW_CSP, csrf_is_valid, embed_csp
from course.web.public.signups import find_course, ip_limit_allows, live_lessons, register, too_many_signups
from course.web.site import PageError, Site, get_site, ids_from

router = APIRouter(include_in_schema=False)
SiteDep = Annotated[Site, Depends(get_site)]
TextField = Annotated[str, Form()]

# The honeypot: a field people never see (hidden by CSS, skipped by tab and autofill) that bots
# fill in. A signup with it filled gets the usual page and nothing is stored.
HONEYPOT_FIELD = "leave_blank"


# --- course list, course page, signup --------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def index(request: Request, site: SiteDep) -> HTMLResponse:
    with site.sessions.begin() as session:
        rows = session.execute(
            select(Course, func.count(Lesson.id))
            .outerjoin(Lesson, (Lesson.course_id == Course.id) & Lesson.retired_at.is_(None))
            .group_by(Course.id)
            .order_by(Course.title)
        ).all()
        return site.page(request, "index.html", courses=[{"course": c, "lesson_count": n} for c, n in rows])


def _course_page(
    site: Site,
    request: Request,
    slug: str,
    *,
    template: str,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    with site.sessions.begin() as session:
        course = find_course(session, slug)
        if course is None:
            raise PageError(404, "Course not found", "There is no course at this address. See the list of courses.")
        embedded = template == "embed.html"
        return site.page(
            request,
            template,
            status=status,
            csp=embed_csp(site.settings.embed_frame_ancestors) if embedded else None,
            course=course,
            lessons=live_lessons(session, course),
            send_days=_send_days(course),
            form=form or {"email": "", "name": "", "timezone": ""},
            errors=errors or {},
            honeypot_field=HONEYPOT_FIELD,
            timezone_names=_zone_names_for_list(),
            confirm_days=site.settings.confirm_link_max_age_days,
        )


@router.get("/courses/{slug}", response_class=HTMLResponse)
def course_page(slug: str, request: Request, site: SiteDep) -> HTMLResponse:
    return _course_page(site, request, slug, template="course.html")


@router.get("/courses/{slug}/embed", response_class=HTMLResponse)
def embed_page(slug: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The signup form alone, for publishers to put in an <iframe>: the one framable page."""
    return _course_page(site, request, slug, template="embed.html")


def _signup(
    site: Site,
    request: Request,
    slug: str,
    *,
    email: str,
    name: str,
    timezone: str,
    honeypot: str,
    template: str,
) -> HTMLResponse:
    """1. Count the attempt per IP; over the limit: 429.
    2. Honeypot filled: the usual answer, nothing stored.
    3. Bad fields: the form again, with a message per field (422).
    4. Sign up, then the one "check your inbox" page for every outcome."""
    embedded = template == "embed.html"
    csp = embed_csp(site.settings.embed_frame_ancestors) if embedded else None
    with site.sessions.begin() as session:
        course = find_course(session, slug)
        if course is None:
            raise PageError(404, "Course not found", "There is no course at this address. See the list of courses.")
        course_id, course_title = course.id, course.title
    if not ip_limit_allows(site, request):
        raise too_many_signups(site)
    answer = {
        "course_title": course_title,
        "course_slug": slug,
        "email": email.strip()[:320],
        "confirm_days": site.settings.confirm_link_max_age_days,
        "embedded": embedded,
    }
    if honeypot:
        return site.page(request, "check_inbox.html", csp=csp, **answer)
    details, errors = check_signup(email, name, timezone.strip() or "UTC")
    if details is None:
        form = {"email": email[:320], "name": name[:200], "timezone": timezone[:64]}
        return _course_page(site, request, slug, template=template, status=422, form=form, errors=errors)
    register(site, course_id, details)
    answer["email"] = details.email
    return site.page(request, "check_inbox.html", csp=csp, **answer)


@router.post("/courses/{slug}", response_class=HTMLResponse)
def signup_form(
    slug: str,
    request: Request,
    site: SiteDep,
    email: TextField = "",
    name: TextField = "",
    timezone: TextField = "",
    csrf_token: TextField = "",
    leave_blank: TextField = "",
) -> HTMLResponse:
    """The form on our own course page: CSRF-checked like every form we serve."""
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise _csrf_failed()
    return _signup(
        site, request, slug, email=email, name=name, timezone=timezone, honeypot=leave_blank, template="course.html"
    )


@router.post("/courses/{slug}/subscribe", response_class=HTMLResponse)
def signup_from_elsewhere(
    slug: str,
    request: Request,
    site: SiteDep,
    email: TextField = "",
    name: TextField = "",
    timezone: TextField = "",
    embedded: TextField = "",
    leave_blank: TextField = "",
) -> HTMLResponse:
    """Where the embeddable form and the snippet pasted into publishers' pages post. No CSRF
    token by design: the snippet is static HTML on another site and a framed page gets no cookie
    (third-party). It holds no one's standing to abuse: double opt-in, the honeypot and both rate
    limits are what guard it."""
    template = "embed.html" if embedded else "course.html"
    return _signup(
        site, request, slug, email=email, name=name, timezone=timezone, honeypot=leave_blank, template=template
    )


def _csrf_failed() -> PageError:
    return PageError(
        403,
        "Please try that again",
        "This form had been open too long or your browser blocked our cookie. Reload the page and send it again.",
    )


def _send_days(course: Course) -> str:
    """The course's sending days in words: "every weekday", "every day", "on Mon, Wed and Fri"."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    days = sorted(course.weekdays)
    if days == list(range(7)):
        return "every day"
    if days == list(range(5)):
        return "every weekday"
    listed = [names[day] for day in days]
    return "on " + (", ".join(listed[:-1]) + " and " + listed[-1] if len(listed) > 1 else listed[0])


# --- confirm ---------------------------------------------------------------------------------


def _confirm_ids(site: Site, token: str) -> tuple[int, int]:
    payload = site.read_link(
        LinkPurpose.CONFIRM, token, max_age_seconds=site.settings.confirm_link_max_age_days * 86400
    )
    subscriber_id, course_id = ids_from(payload, required=2)
    assert subscriber_id is not None and course_id is not None  # required ids are never None
    return subscriber_id, course_id


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A page with one button, not the confirmation itself: mail scanners open every link, and a
    signup someone else typed must not confirm itself that way."""
    subscriber_id, course_id = _confirm_ids(site, token)
    with site.sessions.begin() as session:
        enrollment = session.scalars(
            select(Enrollment).where(Enrollment.subscriber_id == subscriber_id, Enrollment.course_id == course_id)
        ).first()
        if enrollment is None:
            raise _signup_gone()
        if enrollment.status != EnrollmentStatus.PENDING:
            return _confirmed_page(site, request, enrollment, ConfirmOutcome.ALREADY_CONFIRMED)
        return site.page(
            request,
            "confirm.html",
            course=enrollment.course,
            email=enrollment.subscriber.email,
            action=f"/confirm/{token}",
        )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm_submit(token: str, request: Request, site: SiteDep, csrf_token: TextField = "") -> HTMLResponse:
    subscriber_id, course_id = _confirm_ids(site, token)
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise _csrf_failed()
    with site.sessions.begin() as session:
        result = confirm(session, subscriber_id, course_id, now=site.now())
        if result.enrollment is None:
            raise _signup_gone()
        return _confirmed_page(site, request, result.enrollment, result.outcome)


def _signup_gone() -> PageError:
    return PageError(
        410,
        "This signup has expired",
        "We could not find this signup any more: unconfirmed signups are removed after a while. "
        "Sign up again on the course page.",
    )


def _confirmed_page(site: Site, request: Request, enrollment: Enrollment, outcome: ConfirmOutcome) -> HTMLResponse:
    return site.page(
        request,
        "confirmed.html",
        outcome=outcome.value,
        course=enrollment.course,
        email=enrollment.subscriber.email,
        preferences_url=site.signer.url(LinkPurpose.PREFERENCES, enrollment.subscriber_id, enrollment.course_id),
    )


# --- preferences -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentView:
    """One course on the preferences page, in the subscriber's own time."""

    enrollment_id: int
    course_id: int
    course_title: str
    course_slug: str
    status: str
    send_time: str  # "09:00", local
    own_send_time: bool  # False: the course's default
    lessons_sent: int
    lesson_count: int
    next_due_local: str | None


def _preference_views(session: Session, subscriber: Subscriber, first_course_id: int | None) -> list[EnrollmentView]:
    zone = parse_timezone(subscriber.timezone)
    views = []
    for enrollment in sorted(subscriber.enrollments, key=lambda e: (e.course_id != first_course_id, e.enrolled_at)):
        course = enrollment.course
        sent = session.scalar(
            select(func.count()).where(
                Delivery.enrollment_id == enrollment.id,
                Delivery.lesson_id.is_not(None),
                Delivery.state == DeliveryState.SENT,
            )
        )
        next_due = session.scalar(
            select(func.min(Delivery.due_at)).where(
                Delivery.enrollment_id == enrollment.id,
                Delivery.lesson_id.is_not(None),
                Delivery.state.in_([DeliveryState.PENDING, DeliveryState.LEASED]),
            )
        )
        lesson_count = session.scalar(
            select(func.count()).where(Lesson.course_id == course.id, Lesson.retired_at.is_(None))
        )
        views.append(
            EnrollmentView(
                enrollment_id=enrollment.id,
                course_id=course.id,
                course_title=course.title,
                course_slug=course.slug,
                status=enrollment.status,
                send_time=(enrollment.send_time or course.send_time).strftime("%H:%M"),
                own_send_time=enrollment.send_time is not None,
                lessons_sent=sent or 0,
                lesson_count=lesson_count or 0,
                next_due_local=next_due.astimezone(zone).strftime("%a %-d %b, %H:%M") if next_due else None,
            )
        )
    return views


def _preferences_ids(site: Site, token: str) -> tuple[int, int | None]:
    """Preference links carry [subscriber_id] (lessons, newsletters) or [subscriber_id, course_id]
    (account mail, pages): both are read."""
    ids = ids_from(site.read_link(LinkPurpose.PREFERENCES, token), required=1, optional=1)
    subscriber_id = ids[0]
    assert subscriber_id is not None
    return subscriber_id, ids[1] if len(ids) > 1 else None


def _subscriber_gone() -> PageError:
    return PageError(
        410, "Nothing to manage here", "We hold no subscription for this link any more, so we send you nothing."
    )


SAVED_MESSAGES = {
    "pause": "Paused. We will hold your lessons until you resume.",
    "resume": "Resumed. Your next lesson comes at your next send time.",
    "send_next": "Your next lesson is on its way.",
    "send_time": "Saved. Your lessons now arrive at the new time.",
    "timezone": "Saved. Your lessons now follow your new time zone.",
    "unsubscribe_course": "Unsubscribed from that course. You will get no more lessons from it.",
    "unsubscribe_all": "Unsubscribed from everything. You will get no more email from us.",
    "nothing": "There was nothing left to send: you have had every lesson.",
}


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(
    token: str, request: Request, site: SiteDep, saved: str = "", error: str = ""
) -> HTMLResponse:
    subscriber_id, course_id = _preferences_ids(site, token)
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise _subscriber_gone()
        return site.page(
            request,
            "preferences.html",
            subscriber=subscriber,
            enrollments=_preference_views(session, subscriber, course_id),
            saved_message=SAVED_MESSAGES.get(saved, ""),
            error_message=PREFERENCE_ERRORS.get(error, ""),
            action=f"/preferences/{token}",
            timezone_names=_zone_names_for_list(),
        )


PREFERENCE_ERRORS = {
    "send_time": "Please give a time like 07:30.",
    "timezone": "Please choose a time zone from the list, like Europe/Berlin.",
}


@router.post("/preferences/{token}")
def preferences_submit(
    token: str,
    request: Request,
    site: SiteDep,
    action: TextField = "",
    course_id: TextField = "",
    send_time: TextField = "",
    timezone: TextField = "",
    csrf_token: TextField = "",
) -> Response:
    """Apply one change, then back to the page (303, so a reload does not post again)."""
    subscriber_id, _ = _preferences_ids(site, token)
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise _csrf_failed()
    page_url = f"/preferences/{token}"
    now = site.now()
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise _subscriber_gone()
        if action == "timezone":
            try:
                change_timezone(session, subscriber, timezone, now=now)
            except UnknownTimeZone:
                return RedirectResponse(f"{page_url}?error=timezone", status_code=303)
            return RedirectResponse(f"{page_url}?saved=timezone", status_code=303)
        if action == "unsubscribe_all":
            unsubscribe(session, subscriber, course_id=None, now=now)
            return RedirectResponse(f"{page_url}?saved=unsubscribe_all", status_code=303)
        enrollment = next((e for e in subscriber.enrollments if str(e.course_id) == course_id.strip()), None)
        if enrollment is None:
            raise PageError(400, "Nothing changed", "That course is not one of yours. Go back and try again.")
        saved = _apply_course_action(session, subscriber, enrollment, action, send_time, now=now)
    return RedirectResponse(f"{page_url}?{saved}", status_code=303)


def _apply_course_action(
    session: Session, subscriber: Subscriber, enrollment: Enrollment, action: str, send_time: str, *, now: datetime
) -> str:
    """One change to one course; returns the query string for the page that follows."""
    # Leaving always works; everything else needs an address we still send to.
    running = enrollment.status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED) and (
        subscriber.status == SubscriberStatus.ACTIVE
    )
    if action == "unsubscribe_course":
        unsubscribe(session, subscriber, course_id=enrollment.course_id, now=now)
        return "saved=unsubscribe_course"
    if action == "pause" and running and enrollment.status == EnrollmentStatus.ACTIVE:
        pause(session, enrollment)
        return "saved=pause"
    if action == "resume" and running and enrollment.status == EnrollmentStatus.PAUSED:
        resume(session, enrollment, now=now)
        return "saved=resume"
    if action == "send_next" and running:
        return "saved=send_next" if send_next_now(session, enrollment, now=now) else "saved=nothing"
    if action == "send_time" and running:
        chosen = _parse_clock_time(send_time)
        if chosen is None:
            return "error=send_time"
        change_send_time(session, enrollment, chosen, now=now)
        return "saved=send_time"
    raise PageError(400, "Nothing changed", "That change does not apply to this course right now. Go back and reload.")


def _parse_clock_time(raw: str) -> time | None:
    try:
        return time.fromisoformat(raw.strip()).replace(second=0, microsecond=0, tzinfo=None)
    except ValueError:
        return None


@lru_cache
def _zone_names_for_list() -> list[str]:
    """The choices offered for the time zone field: the region/city names people recognise."""
    return sorted(name for name in available_timezones() if "/" in name and not name.startswith(("Etc/", "SystemV/")))


# --- unsubscribe -----------------------------------------------------------------------------


def _unsubscribe_ids(site: Site, token: str) -> tuple[int, int | None]:
    ids = ids_from(site.read_link(LinkPurpose.UNSUBSCRIBE, token), required=1, optional=1, nullable_tail=True)
    subscriber_id = ids[0]
    assert subscriber_id is not None
    return subscriber_id, ids[1] if len(ids) > 1 else None


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """One button and no change: link scanners fetch every URL in a message."""
    subscriber_id, course_id = _unsubscribe_ids(site, token)
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        course = session.get(Course, course_id) if course_id else None
        return site.page(
            request,
            "unsubscribe.html",
            email=subscriber.email if subscriber else None,
            course=course,
            action=f"/u/{token}",
        )


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe_submit(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The RFC 8058 one-click endpoint (the List-Unsubscribe URL) and the page's button alike.
    No CSRF token and no cookie: mail providers post `List-Unsubscribe=One-Click` from their
    servers. Only the signed link decides, and unsubscribing twice is harmless."""
    subscriber_id, course_id = _unsubscribe_ids(site, token)
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        course = session.get(Course, course_id) if course_id else None
        if subscriber is not None:
            unsubscribe(session, subscriber, course_id=course_id, now=site.now())
        return site.page(
            request,
            "unsubscribed.html",
            email=subscriber.email if subscriber else None,
            course=course,
            preferences_url=site.signer.url(LinkPurpose.PREFERENCES, subscriber_id, *([course_id] if course_id else [])),
        )


# --- view in browser -------------------------------------------------------------------------


@dataclass(frozen=True)
class LessonForView:
    """What Renderer.lesson_template reads from a lesson."""

    position: int
    lesson_count: int
    title: str
    reading_minutes: int
    body: dict[str, Any]


@router.get("/view/{token}", response_class=HTMLResponse)
def view_in_browser(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A sent lesson or newsletter as the recipient got it, rendered again with course.render."""
    (delivery_id,) = ids_from(site.read_link(LinkPurpose.VIEW, token), required=1)
    with site.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != DeliveryState.SENT:
            raise PageError(404, "Nothing to show", "This email is not available to view any more.")
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        assert subscriber is not None  # the foreign key cascades
        if delivery.kind == DeliveryKind.LESSON and delivery.lesson_id is not None:
            lesson = session.get(Lesson, delivery.lesson_id)
            assert lesson is not None
            course = lesson.course
            lesson_count = session.scalar(
                select(func.count()).where(Lesson.course_id == course.id, Lesson.retired_at.is_(None))
            )
            template = site.renderer.lesson_template(
                course=course,
                lesson=LessonForView(
                    lesson.position, lesson_count or lesson.position, lesson.title, lesson.reading_minutes, lesson.body
                ),
            )
            unsubscribe_payload: tuple[int, int | None] = (subscriber.id, course.id)
        elif delivery.kind == DeliveryKind.CAMPAIGN and delivery.campaign_id is not None:
            campaign = session.get(Campaign, delivery.campaign_id)
            assert campaign is not None
            template = site.renderer.campaign_template(
                subject=campaign.subject, body_markdown=campaign.body_markdown, sender_name=campaign.sender_name
            )
            unsubscribe_payload = (subscriber.id, None)
        else:
            raise PageError(404, "Nothing to show", "Only lessons and newsletters can be viewed in a browser.")
        email = template.fill(
            {
                "greeting": greeting_for(subscriber.name),
                "view_url": site.signer.url(LinkPurpose.VIEW, delivery.id),
                "preferences_url": site.signer.url(LinkPurpose.PREFERENCES, subscriber.id),
                "unsubscribe_url": site.signer.url(LinkPurpose.UNSUBSCRIBE, *unsubscribe_payload),
            }
        )
    response = HTMLResponse(email.html, headers={"cache-control": "no-store", "x-robots-tag": "noindex"})
    response.headers["content-security-policy"] = EMAIL_VIEW_CSP
    return response

