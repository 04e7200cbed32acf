"""Double opt-in, the second step: the confirmation link opens a page with one button, and the
button confirms (course.audience.subscriptions.confirm)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.audience.signup_requests import signup_of
from course.audience.subscriptions import ConfirmOutcome, confirm, find_enrollment
from course.delivery.links import LinkPurpose
from course.models import Enrollment, EnrollmentStatus, Subscriber
from course.web.public.forms import SiteDep, TextField, csrf_failed
from course.web.security import csrf_is_valid
from course.i18n import N_
from course.web.site import PageError, Site, ids_from

router = APIRouter(include_in_schema=False)


def _confirm_ids(site: Site, token: str) -> tuple[int, int, int | None]:
    """[subscriber, course, confirmation mail]: the third names the signup whose details the
    confirmation applies (links sent before it was added have two ids)."""
    payload = site.read_link(
        LinkPurpose.CONFIRM, token, max_age_seconds=site.settings.confirm_link_max_age_days * 86400
    )
    subscriber_id, course_id, *mail = ids_from(payload, required=2, optional=1)
    assert subscriber_id is not None and course_id is not None  # required ids are never None
    return subscriber_id, course_id, (mail[0] if mail else None)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """A page with one button, not the confirmation itself: mail scanners open every link, and a
    signup someone else typed must not confirm itself that way."""
    subscriber_id, course_id, _ = _confirm_ids(site, token)
    with site.sessions.begin() as session:
        enrollment = find_enrollment(session, subscriber_id, course_id)
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
    subscriber_id, course_id, confirm_mail_id = _confirm_ids(site, token)
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise csrf_failed()
    with site.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        signup = (
            signup_of(session, confirm_mail_id, subscriber_email=subscriber.email, course_id=course_id)
            if subscriber is not None and confirm_mail_id is not None
            else None
        )
        result = confirm(session, subscriber_id, course_id, now=site.now(), signup=signup)
        if result.enrollment is None:
            raise _signup_gone()
        return _confirmed_page(site, request, result.enrollment, result.outcome)


def _signup_gone() -> PageError:
    return PageError(
        410,
        N_("This signup has expired"),
        N_(
            "We could not find this signup any more: unconfirmed signups are removed after a while. "
            "Sign up again on the course page."
        ),
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
