"""The course list, a course's page with its signup form, the embeddable form, and the two places
a signup form posts to."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.audience.subscriptions import check_signup
from course.content.catalogue import find_course, list_courses, live_lessons
from course.models import Course
from course.web.public.forms import SiteDep, TextField, csrf_failed, zone_names_for_list
from course.web.public.signups import (
    ip_limit_allows,
    proof_of_work_challenge,
    proof_of_work_passes,
    register,
    too_many_signups,
)
from course.web.security import csrf_is_valid, embed_csp
from course.web.site import PageError, Site

router = APIRouter(include_in_schema=False)

# The honeypot: a field people never see (hidden by CSS, skipped by tab and autofill) that bots
# fill in. A signup with it filled gets the usual page and nothing is stored.
HONEYPOT_FIELD = "leave_blank"


@router.get("/", response_class=HTMLResponse)
def index(request: Request, site: SiteDep) -> HTMLResponse:
    with site.sessions.begin() as session:
        return site.page(request, "index.html", courses=list_courses(session))


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
            timezone_names=zone_names_for_list(),
            confirm_days=site.settings.confirm_link_max_age_days,
            proof_of_work=proof_of_work_challenge(site),
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
    proof_of_work: str = "",
) -> HTMLResponse:
    """1. Count the attempt per IP; over the limit: 429.
    2. When the site asks for a proof of work and none came (or a spent one): the form again (422).
    3. Honeypot filled: the usual answer, nothing stored.
    4. Bad fields: the form again, with a message per field (422).
    5. Queue the signup, then the one "check your inbox" page for every outcome."""
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
    if not proof_of_work_passes(site, proof_of_work):
        form = {"email": email[:320], "name": name[:200], "timezone": timezone[:64]}
        message = "Your browser's check did not come through. Please send the form again."
        return _course_page(site, request, slug, template=template, status=422, form=form, errors={"email": message})
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
    altcha: TextField = "",
) -> HTMLResponse:
    """The form on our own course page: CSRF-checked like every form we serve."""
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise csrf_failed()
    return _signup(
        site, request, slug, email=email, name=name, timezone=timezone, honeypot=leave_blank, template="course.html",
        proof_of_work=altcha,
    )  # fmt: skip


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
    altcha: TextField = "",
) -> HTMLResponse:
    """Where the embeddable form and the snippet pasted into publishers' pages post. No CSRF
    token by design: the snippet is static HTML on another site and a framed page gets no cookie
    (third-party). It holds no one's standing to abuse: double opt-in, the honeypot and both rate
    limits are what guard it."""
    template = "embed.html" if embedded else "course.html"
    return _signup(
        site, request, slug, email=email, name=name, timezone=timezone, honeypot=leave_blank, template=template,
        proof_of_work=altcha,
    )  # fmt: skip


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
