"""The course list, a course's page with its signup form, the embeddable form, and the two places
a signup form posts to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from babel.dates import get_day_names
from babel.lists import format_list

from course.audience.subscriptions import SignupDetails, check_signup
from course.content.catalogue import find_course, list_courses, live_lessons
from course.delivery.render import course_language
from course.i18n import N_, translate
from course.models import Course
from course.web.public.forms import SiteDep, TextField, csrf_failed, zone_options
from course.web.public.signups import (
    count_and_queue_in_one,
    ip_limit_allows,
    proof_of_work_challenge,
    proof_of_work_passes,
    register,
    signs_up_in_one_statement,
    too_many_signups,
)
from course.web.security import csrf_is_valid, embed_csp
from course.web.site import PageError, Site

router = APIRouter(include_in_schema=False)

# The honeypot: a field people never see (hidden by CSS, skipped by tab and autofill) that bots
# fill in. A signup with it filled gets the usual page and nothing is stored.
HONEYPOT_FIELD = "leave_blank"


# The cached pages (the course list, a course's page and its embeddable form) are Starlette routes,
# not FastAPI ones: they take no parameter but the path's, and FastAPI's per-request work (solving
# dependencies, validating parameters) was half of what such a page cost. Errors still reach the
# app's exception handlers, which sit outside every route.


async def index(request: Request) -> HTMLResponse:
    site: Site = request.app.state.site
    if site.catalogue.holds(("index",)):
        return _index(request, site, check=False)
    return await run_in_threadpool(_index, request, site)


router.add_route("/", index, methods=["GET"], include_in_schema=False)


def _index(request: Request, site: Site, *, check: bool = True) -> HTMLResponse:
    """check=False: on the event loop, from memory (CatalogueCache.holds said so)."""

    def context() -> dict[str, Any]:
        with site.sessions.begin() as session:
            return {"courses": list_courses(session)}

    return site.cached_page(request, ("index",), "index.html", context, check=check)


def _course_not_found() -> PageError:
    return PageError(404, N_("Course not found"), N_("There is no course at this address. See the list of courses."))


def _course_context(
    site: Site, slug: str, template: str, form: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> dict[str, Any]:
    with site.sessions.begin() as session:
        course = find_course(session, slug)
        if course is None:
            raise _course_not_found()
        return {
            "course": course,
            "lessons": live_lessons(session, course),
            "send_days": _send_days(course),
            "form": form or {"email": "", "name": "", "timezone": ""},
            "errors": errors or {},
            "honeypot_field": HONEYPOT_FIELD,
            "timezone_options": zone_options(),
            "confirm_days": site.settings.confirm_link_max_age_days,
        }


def _course_page(site: Site, request: Request, slug: str, *, template: str, check: bool = True) -> HTMLResponse:
    """The page as every visitor first sees it: from the catalogue cache, with this visitor's token.
    An unknown slug is a 404 from the catalogue cache's set of slugs, with no database. When the
    site asks for a proof of work, each visitor's form carries a challenge of its own (a shared one
    could be spent once only), so the page is rendered per request instead. check=False: on the
    event loop, from memory (CatalogueCache.holds said so)."""
    if site.catalogue.course(slug, check=check) is None:
        raise _course_not_found()
    csp = embed_csp(site.settings.embed_frame_ancestors) if template == "embed.html" else None
    if _asks_proof_of_work(site):
        return _form_page(site, request, slug, template=template, csp=csp)
    return site.cached_page(
        request, (template, slug), template, lambda: _course_context(site, slug, template), csp=csp, check=check
    )


def _form_page(
    site: Site,
    request: Request,
    slug: str,
    *,
    template: str,
    csp: str | None,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    """The course or embed page rendered for this request alone: the form sent back with what was
    typed and a message per field, or any form when a proof of work is asked for (a fresh challenge)."""
    context = _course_context(site, slug, template, form, errors)
    return site.page(
        request, template, status=status, csp=csp, proof_of_work=proof_of_work_challenge(site), **context
    )


def _asks_proof_of_work(site: Site) -> bool:
    return site.settings.signup_proof_of_work > 0


# The course page is the one a viral article sends everyone to. Served from the catalogue cache it
# needs no database and no thread: the handler answers on the event loop, and goes to the thread
# pool only when the cache must ask the database (a page not rendered yet, or the once-a-second
# version check due).
async def course_page(request: Request) -> HTMLResponse:
    return await _cached_course_page(request, template="course.html")


async def embed_page(request: Request) -> HTMLResponse:
    """The signup form alone, for publishers to put in an <iframe>: the one framable page."""
    return await _cached_course_page(request, template="embed.html")


router.add_route("/courses/{slug}", course_page, methods=["GET"], include_in_schema=False)
router.add_route("/courses/{slug}/embed", embed_page, methods=["GET"], include_in_schema=False)


async def _cached_course_page(request: Request, *, template: str) -> HTMLResponse:
    site: Site = request.app.state.site
    slug: str = request.path_params["slug"]
    if not _asks_proof_of_work(site) and site.catalogue.holds((template, slug), slug):
        return _course_page(site, request, slug, template=template, check=False)
    return await run_in_threadpool(_course_page, site, request, slug, template=template)


@dataclass(frozen=True)
class SignupFields:
    """What both signup forms send (ours and the embeddable one)."""

    email: str
    name: str
    timezone: str
    honeypot: str  # HONEYPOT_FIELD
    proof_of_work: str  # the solved ALTCHA challenge, when the site asks for one


def signup_fields(
    email: TextField = "",
    name: TextField = "",
    timezone: TextField = "",
    leave_blank: TextField = "",
    altcha: TextField = "",
) -> SignupFields:
    return SignupFields(email=email, name=name, timezone=timezone, honeypot=leave_blank, proof_of_work=altcha)


SignupFieldsDep = Annotated[SignupFields, Depends(signup_fields)]


def _signup(site: Site, request: Request, slug: str, fields: SignupFields, *, template: str) -> HTMLResponse:
    """1. Count the attempt per IP; over the limit: 429.
    2. When the site asks for a proof of work and none came (or a spent one): the form again (422).
    3. Honeypot filled: the usual answer, nothing stored.
    4. Bad fields: the form again, with a message per field (422).
    5. Queue the signup, then the one "check your inbox" page for every outcome.
    On PostgreSQL without a proof of work (the default), steps 1, 3, 4 and 5 are one statement in
    autocommit (signups.count_and_queue_in_one: the fields are checked first, in Python); otherwise
    steps 1 to 5 are one transaction (one commit: the per-IP count, the spent proof of work when
    one is asked for, the one INSERT into the signup queue). The course comes from the catalogue
    cache, and the pages are rendered after the commit."""
    email, name, timezone, honeypot = fields.email, fields.name, fields.timezone, fields.honeypot
    embedded = template == "embed.html"
    csp = embed_csp(site.settings.embed_frame_ancestors) if embedded else None
    course = site.catalogue.course(slug)
    if course is None:
        raise _course_not_found()
    answer = {
        "course_title": course.title,
        "course_slug": slug,
        "email": email.strip()[:320],
        "confirm_days": site.settings.confirm_link_max_age_days,
        "embedded": embedded,
        "language": course.language,
    }
    form = {"email": email[:320], "name": name[:200], "timezone": timezone[:64]}
    details: SignupDetails | None = None
    errors: dict[str, str] = {}
    proven = True
    if signs_up_in_one_statement(site):
        if not honeypot:
            details, errors = check_signup(email, name, timezone.strip() or "UTC")
        if not count_and_queue_in_one(site, request, course.id, details):
            raise too_many_signups(site)
    else:
        with site.sessions.begin() as session:
            if not ip_limit_allows(session, site, request):
                raise too_many_signups(site)
            proven = proof_of_work_passes(session, site, fields.proof_of_work)
            if proven and not honeypot:
                details, errors = check_signup(email, name, timezone.strip() or "UTC")
                if details is not None:
                    register(session, site, course.id, details)
    if not proven:
        message = "Your browser's check did not come through. Please send the form again."
        return _form_page(site, request, slug, template=template, csp=csp, status=422, form=form, errors={"email": message})
    if honeypot:
        return site.page(request, "check_inbox.html", csp=csp, **answer)
    if details is None:
        return _form_page(site, request, slug, template=template, csp=csp, status=422, form=form, errors=errors)
    answer["email"] = details.email
    return site.page(request, "check_inbox.html", csp=csp, **answer)


@router.post("/courses/{slug}", response_class=HTMLResponse)
def signup_form(
    slug: str, request: Request, site: SiteDep, fields: SignupFieldsDep, csrf_token: TextField = ""
) -> HTMLResponse:
    """The form on our own course page: CSRF-checked like every form we serve."""
    if not csrf_is_valid(site.settings.secret_key, request, csrf_token):
        raise csrf_failed()
    return _signup(site, request, slug, fields, template="course.html")


@router.post("/courses/{slug}/subscribe", response_class=HTMLResponse)
def signup_from_elsewhere(
    slug: str, request: Request, site: SiteDep, fields: SignupFieldsDep, embedded: TextField = ""
) -> HTMLResponse:
    """Where the embeddable form and the snippet pasted into publishers' pages post. No CSRF
    token by design: the snippet is static HTML on another site and a framed page gets no cookie
    (third-party). It holds no one's standing to abuse: double opt-in, the honeypot and both rate
    limits are what guard it."""
    return _signup(site, request, slug, fields, template="embed.html" if embedded else "course.html")


def _send_days(course: Course) -> str:
    """The course's sending days in words, in its language: "every weekday", "every day", "on Mon,
    Wed and Fri" ("jeden Tag", "mo., mi. und fr." …)."""
    language = course_language(course)
    days = sorted(course.weekdays)
    if days == list(range(7)):
        return translate(language, "every day")
    if days == list(range(5)):
        return translate(language, "every weekday")
    names = get_day_names("abbreviated", locale=language)  # 0 = Monday, like Course.weekdays
    return translate(language, "on %(days)s", days=format_list([names[day] for day in days], locale=language))
