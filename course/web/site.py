"""What every route needs, built once per app: settings, the session factory, the link signer, the
one template environment, and how a page or a friendly error is rendered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from course.clock import get_clock, get_wall_clock
from course.delivery.links import MAX_ID, InvalidLink, LinkPurpose, Signer
from course.delivery.render import Renderer, course_language
from course.i18n import N_, gettext_callables, translate
from course.settings import Settings
from course.web.cache import CatalogueCache
from course.web.security import CSRF_FIELD, CsrfTokens


# Stands in for the visitor's CSRF token in a cached page: letters only, so escaping leaves it as is.
CSRF_PLACEHOLDER = "csrfPlaceholderQ7vX2kLm9Tz4"


class PageError(Exception):
    """A request we cannot serve, said in words fit for the person who made it.

    ``title`` and ``message`` are English catalogue msgids (marked with ``N_``), translated when the
    page is rendered: into ``language`` when the error is about a course, else the site's language.
    ``values`` fill the message's ``%(name)s`` placeholders."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        retry_after: int | None = None,
        values: dict[str, Any] | None = None,
        language: str | None = None,
    ) -> None:
        self.values = values or {}
        super().__init__(f"{status} {title}: {message % self.values if self.values else message}")
        self.status = status
        self.title = title
        self.message = message
        self.retry_after = retry_after
        self.language = language


# What a person reading an email can do about a link that failed, per purpose.
_EXPIRED_HELP = {
    LinkPurpose.CONFIRM: N_(
        "Confirmation links work for %(days)s days. Sign up again and we will send you a fresh one."
    ),
    LinkPurpose.ERASE: N_("Links to erase your data work for %(hours)s hours. Ask for a new one on your preferences page."),
    LinkPurpose.PREFERENCES: N_(
        "Links to your preferences work for %(days)s days after the email that carried them. Open the link in "
        "your latest email; the unsubscribe link in any of our emails always works."
    ),
}
_INVALID_HELP = N_(
    "The link may have been cut short or changed on its way here. Open it straight from the email, "
    "or copy the whole address into your browser."
)


@dataclass
class Site:
    settings: Settings
    sessions: sessionmaker[Session]
    signer: Signer
    renderer: Renderer
    environment: Environment
    catalogue: CatalogueCache

    @cached_property
    def autocommit(self) -> Engine | None:
        """On PostgreSQL, the app's engine (the same pool) with each statement its own transaction:
        for a request whose whole work is one statement, that saves the BEGIN and the COMMIT round
        trips. None on SQLite."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return None
        return engine.execution_options(isolation_level="AUTOCOMMIT")

    def reading(self) -> Session:
        """A session for a request that only reads (use it in a `with`). On PostgreSQL its
        statements run on the autocommit engine: no BEGIN and no COMMIT round trip, each statement
        seeing what was committed when it ran."""
        return self.sessions(bind=self.autocommit) if self.autocommit is not None else self.sessions()

    def now(self) -> datetime:
        """The course calendar: for due times, schedules and campaign progress only. Asked per
        request, so a test's ManualClock or the demo's fast clock applies."""
        return get_clock(self.settings).now()

    def wall_now(self) -> datetime:
        """Real time, for security rules (sessions, sign-in throttles, TOTP steps, token use, rate
        limits, proofs of work): under the demo's fast calendar too."""
        return get_wall_clock().now()

    @property
    def secure_cookies(self) -> bool:
        return self.settings.base_url.startswith("https://")

    def page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        csp: str | None = None,
        headers: dict[str, str] | None = None,
        csrf: CsrfTokens | None = None,
        **context: Any,
    ) -> HTMLResponse:
        # csrf: the admin's own pair (course.web.admin.auth.admin_csrf); else the public pages'.
        tokens = csrf or CsrfTokens(self.settings.secret_key, request)
        html = self._render(template, tokens.field, context)
        return self._respond(html, tokens, status=status, csp=csp, headers=headers)

    def cached_page(
        self,
        request: Request,
        key: tuple[str, ...],
        template: str,
        context: Callable[[], dict[str, Any]],
        *,
        csp: str | None = None,
        check: bool = True,
    ) -> HTMLResponse:
        """A page that is the same for every visitor but for its CSRF token (course list, course
        page, embed page): rendered once per catalogue change (CatalogueCache) with a placeholder
        where the token goes, which each request fills in with its own. context() is only called
        to render, so it is where the page's queries belong. check: CatalogueCache.page's."""
        page = self.catalogue.page(
            key, lambda: self._render(template, lambda: CSRF_PLACEHOLDER, context()), hole=CSRF_PLACEHOLDER, check=check
        )
        tokens = CsrfTokens(self.settings.secret_key, request)
        token = tokens.field() if len(page.pieces) > 1 else ""
        if "gzip" in request.headers.get("accept-encoding", ""):
            response = self._respond(page.gzipped(token), tokens, status=200, csp=csp, headers=None)
            response.headers["content-encoding"] = "gzip"  # GZipMiddleware leaves it as it is
            response.headers["vary"] = "Accept-Encoding"
            return response
        return self._respond(page.plain(token), tokens, status=200, csp=csp, headers=None)

    def _render(self, template: str, csrf_token: Callable[[], str], context: dict[str, Any]) -> str:
        # A page about one course speaks its language (a `language` value, else the course's own);
        # a page about no one course speaks the site's.
        context = dict(context)
        course = context.get("course")
        language = context.pop("language", None) or (
            course_language(course) if course is not None else self.settings.site_language
        )
        return self.environment.get_template(f"web/{template}").render(
            **gettext_callables(language),
            csrf_token=csrf_token,
            csrf_field=CSRF_FIELD,
            base_url=self.settings.base_url.rstrip("/"),
            **context,
        )

    def _respond(
        self, html: str | bytes, tokens: CsrfTokens, *, status: int, csp: str | None, headers: dict[str, str] | None
    ) -> HTMLResponse:
        response = HTMLResponse(html, status_code=status, headers=headers)
        if tokens.used and tokens.is_new:
            response.set_cookie(
                tokens.cookie_name, tokens.cookie_value, httponly=True, samesite="lax", secure=self.secure_cookies, path="/"
            )
        # Pages carry signed links, personal details or a visitor's CSRF token: no shared cache keeps them.
        response.headers["cache-control"] = "no-store"
        response.headers["x-robots-tag"] = "noindex"
        if csp:
            response.headers["content-security-policy"] = csp
        return response

    def error_page(self, request: Request, error: PageError) -> HTMLResponse:
        headers = {"retry-after": str(error.retry_after)} if error.retry_after else None
        language = error.language or self.settings.site_language
        return self.page(
            request,
            "message.html",
            status=error.status,
            headers=headers,
            title=translate(language, error.title),
            message=translate(language, error.message, **error.values),
            language=language,
        )

    def read_link(self, purpose: LinkPurpose, token: str, *, max_age_seconds: int | None = None) -> list[Any]:
        """The payload of a signed link, or a PageError (410 expired, 400 anything else)."""
        try:
            return self.signer.read(purpose, token, max_age_seconds=max_age_seconds)
        except InvalidLink as exc:
            if exc.expired:
                days = (
                    self.settings.preference_link_max_age_days
                    if purpose == LinkPurpose.PREFERENCES
                    else self.settings.confirm_link_max_age_days
                )
                help_text = _EXPIRED_HELP.get(purpose, N_("Ask for a new link."))
                values = {"days": days, "hours": self.settings.erase_link_max_age_hours}
                raise PageError(410, N_("This link has expired"), help_text, values=values) from exc
            raise PageError(400, N_("This link does not work"), _INVALID_HELP) from exc


def ids_from(payload: list[Any], *, required: int, optional: int = 0, nullable_tail: bool = False) -> list[int | None]:
    """Check a link payload's shape: `required` ids, then up to `optional` more (None allowed in
    those when nullable_tail). Signed payloads are ours, but an old format must not become a 500."""
    if not required <= len(payload) <= required + optional:
        raise PageError(400, N_("This link does not work"), _INVALID_HELP)
    for position, value in enumerate(payload):
        if value is None and nullable_tail and position >= required:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
            raise PageError(400, N_("This link does not work"), _INVALID_HELP)
    return list(payload)


async def get_site(request: Request) -> Site:
    # async: FastAPI runs a plain-def dependency in its thread pool, a hop every request would pay.
    site: Site = request.app.state.site
    return site
