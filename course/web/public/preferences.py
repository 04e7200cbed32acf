"""The preferences page a subscriber reaches from every email: each course with its progress
(read by course.audience.preferences in one query), and one change per form post: pause, resume,
the next lesson now, a send time, a time zone, or leaving a course or everything."""

from __future__ import annotations

from datetime import datetime, time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from course.audience.enrollment import pause, resume, unsubscribe
from course.audience.erasure import access_export
from course.audience.preferences import EnrollmentView, enrollment_views, subscriber_row
from course.audience.schedule import UnknownTimeZone
from course.audience.subscriptions import change_send_time, change_timezone, send_next_now
from course.delivery.links import LinkPurpose
from course.i18n import N_, translate
from course.ledger import add_account_mail
from course.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from course.web.public.forms import SiteDep, TextField, csrf_failed, zone_options
from course.web.security import csrf_is_valid
from course.web.site import PageError, Site, ids_from

router = APIRouter(include_in_schema=False)


def _preferences_ids(site: Site, token: str) -> tuple[int, int | None]:
    """Preference links carry [subscriber_id] (lessons, newsletters) or [subscriber_id, course_id]
    (account mail, pages): both are read."""
    ids = ids_from(site.read_link(LinkPurpose.PREFERENCES, token), required=1, optional=1)
    subscriber_id = ids[0]
    assert subscriber_id is not None
    return subscriber_id, ids[1] if len(ids) > 1 else None


def _subscriber_gone() -> PageError:
    return PageError(
        410, N_("Nothing to manage here"), N_("We hold no subscription for this link any more, so we send you nothing.")
    )


SAVED_MESSAGES = {
    "pause": N_("Paused. We will hold your lessons until you resume."),
    "resume": N_("Resumed. Your next lesson comes at your next send time."),
    "send_next": N_("Your next lesson is on its way."),
    "send_time": N_("Saved. Your lessons now arrive at the new time."),
    "timezone": N_("Saved. Your lessons now follow your new time zone."),
    "unsubscribe_course": N_("Unsubscribed from that course. You will get no more lessons from it."),
    "unsubscribe_all": N_("Unsubscribed from everything. You will get no more email from us."),
    "nothing": N_("There was nothing left to send: you have had every lesson."),
    "erase_request": N_("We sent you an email. Open the link in it to confirm that we should erase your data."),
}


def page_language(site: Site, enrollments: list[EnrollmentView], course_id: int | None) -> str:
    """The page speaks the language of the course whose mail led here, else the one language all
    the subscriber's courses share, else the site's."""
    by_course = {view.course_id: view.course_language for view in enrollments}
    if course_id in by_course:
        return by_course[course_id]
    languages = set(by_course.values())
    return languages.pop() if len(languages) == 1 else site.settings.site_language


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(
    token: str, request: Request, site: SiteDep, saved: str = "", error: str = ""
) -> HTMLResponse:
    subscriber_id, course_id = _preferences_ids(site, token)
    with site.reading() as session:
        subscriber = subscriber_row(session, subscriber_id)
        if subscriber is None:
            raise _subscriber_gone()
        enrollments = enrollment_views(session, subscriber, course_id)
        language = page_language(site, enrollments, course_id)
        return site.page(
            request,
            "preferences.html",
            subscriber=subscriber,
            enrollments=enrollments,
            language=language,
            saved_message=translate(language, SAVED_MESSAGES[saved]) if saved in SAVED_MESSAGES else "",
            error_message=translate(language, PREFERENCE_ERRORS[error]) if error in PREFERENCE_ERRORS else "",
            action=f"/preferences/{token}",
            timezone_options=zone_options(),
        )


@router.get("/preferences/{token}/data")
def download_my_data(token: str, site: SiteDep) -> Response:
    """"Download my data": the same JSON as the admin's access export (course.audience.erasure),
    to whoever holds the subscriber's own signed preferences link, as a file never cached."""
    subscriber_id, _ = _preferences_ids(site, token)
    with site.reading() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status == SubscriberStatus.ERASED:
            raise _subscriber_gone()
        data = access_export(session, subscriber)
    return JSONResponse(
        data,
        headers={"Content-Disposition": 'attachment; filename="my-data.json"', "Cache-Control": "no-store"},
    )


PREFERENCE_ERRORS = {
    "send_time": N_("Please give a time like 07:30."),
    "timezone": N_("Please choose a time zone from the list, like Europe/Berlin."),
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
        raise csrf_failed()
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
        if action == "erase_request":
            _request_erasure(session, subscriber, course_id, now=now)
            return RedirectResponse(f"{page_url}?saved=erase_request", status_code=303)
        if action == "unsubscribe_all":
            unsubscribe(session, subscriber, course_id=None, now=now)
            return RedirectResponse(f"{page_url}?saved=unsubscribe_all", status_code=303)
        enrollment = next((e for e in subscriber.enrollments if str(e.course_id) == course_id.strip()), None)
        if enrollment is None:
            raise PageError(400, N_("Nothing changed"), N_("That course is not one of yours. Go back and try again."))
        saved = _apply_course_action(session, subscriber, enrollment, action, send_time, now=now)
    return RedirectResponse(f"{page_url}?{saved}", status_code=303)


def _request_erasure(session: Session, subscriber: Subscriber, course_id: str, *, now: datetime) -> None:
    """The mail that confirms an erasure (course.web.public.erase): urgent, through the ledger,
    in the language of the course the form names, else of the subscriber's first course. It goes
    whatever the subscriber's status: leaving does not take away the right to be erased."""
    enrollments = sorted(subscriber.enrollments, key=lambda e: (str(e.course_id) != course_id.strip(), e.id))
    if not enrollments:
        raise PageError(400, N_("Nothing changed"), N_("Write to us to erase your data: we have no course to send the link from."))
    add_account_mail(session, subscriber_id=subscriber.id, enrollment_id=enrollments[0].id, template="erase", now=now)


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
        pause(session, enrollment, now=now)
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
    raise PageError(
        400, N_("Nothing changed"), N_("That change does not apply to this course right now. Go back and reload.")
    )


def _parse_clock_time(raw: str) -> time | None:
    try:
        return time.fromisoformat(raw.strip()).replace(second=0, microsecond=0, tzinfo=None)
    except ValueError:
        return None
