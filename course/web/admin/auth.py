"""Who may use an admin route, decided in one place.

Every admin page depends on `RequirePage(role)` and every admin API route on `RequireToken(role)`
(tests/web/admin/test_access.py walks the route table and fails on a route with neither):

- a page without a valid session cookie answers 303 to the sign-in page (which brings the person
  back afterwards); the API without a valid bearer token answers 401;
- a role below the route's answers 403 (owner > editor > viewer);
- an admin whose password was chosen by someone else is sent to change it before anything else.

Every admin form carries a CSRF field (`admin_csrf`, checked by `check_csrf`): for a signed-in
admin an HMAC over their session, so only a page of that session can fill it in; the sign-in forms
(no session yet) get a server-minted cookie of their own, `__Host-`-prefixed on https so that no
sibling subdomain can set it. Every admin POST from another site is refused before this
(course.web.security.SameSiteAdminPosts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from course.accounts.credentials import role_allows
from course.accounts.store import AccountLimits, SignedIn, session_admin, token_role
from course.models import AdminRole
from course.web.security import CsrfTokens
from course.web.site import Site, get_site

SESSION_COOKIE = "course_admin"
HOME_PATH = "/admin/dashboard"  # where /admin and a sign-in without a page to go back to land
SESSION_COOKIE_PATH = "/admin"
LOGIN_PATH = "/admin/login"
PASSWORD_PATH = "/admin/account/password"

SiteDep = Annotated[Site, Depends(get_site)]
_bearer = HTTPBearer(auto_error=False, description="An API token made by an owner under Admin > API tokens.")


class AdminPageError(Exception):
    """An admin request we refuse, with words for the admin (rendered in the admin layout)."""

    def __init__(self, status: int, title: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{status} {title}: {message}")
        self.status = status
        self.title = title
        self.message = message
        self.retry_after = retry_after


class SignInRequired(Exception):
    """No usable session: go to the sign-in page, then back to `next_path`. `notice` says why on
    that page: "ended" (the session timed out), "unsaved" (and a form sent meanwhile was not saved)."""

    def __init__(self, next_path: str, *, notice: str = "") -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.notice = notice


class PasswordChangeRequired(Exception):
    pass


def login_url(next_path: str, notice: str = "") -> str:
    query = [f"next={quote(next_path, safe='/')}"] if next_path not in ("", "/admin", "/admin/") else []
    query += [f"notice={notice}"] if notice else []
    return f"{LOGIN_PATH}?{'&'.join(query)}" if query else LOGIN_PATH


def safe_next(raw: str | None) -> str:
    """Only our own admin pages are places to go back to: never another host."""
    if raw and raw.startswith("/admin") and not raw.startswith("//") and "\\" not in raw and LOGIN_PATH not in raw:
        return raw
    return HOME_PATH


def limits_of(site: Site) -> AccountLimits:
    return AccountLimits.from_settings(site.settings)


@dataclass(frozen=True)
class Actor:
    """The one acting: an admin signed in through a browser, or an API token."""

    role: str
    admin: SignedIn | None = None  # None for a token
    session_token: str = ""

    @property
    def label(self) -> str:
        return self.admin.email if self.admin else "API token"

    def may(self, role: AdminRole) -> bool:
        return role_allows(self.role, role)


class RequirePage:
    """Dependency of every admin page: the signed-in admin, at least `role`."""

    def __init__(self, role: AdminRole, *, allow_password_change: bool = False) -> None:
        self.role = role
        self.allow_password_change = allow_password_change

    def __call__(self, request: Request, site: SiteDep) -> Actor:
        token = request.cookies.get(SESSION_COOKIE, "")
        with site.sessions.begin() as session:
            admin = session_admin(session, token, limits=limits_of(site), now=site.wall_now()) if token else None
        if admin is None or admin.second_factor_pending:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            posted = request.method not in ("GET", "HEAD")
            # A form sent after the session ended is lost: say so, rather than a bare sign-in page.
            notice = "unsaved" if posted else "ended" if token else ""
            raise SignInRequired("" if posted else target, notice=notice)
        if admin.password_must_change and not self.allow_password_change:
            raise PasswordChangeRequired()
        if not role_allows(admin.role, self.role):
            raise AdminPageError(
                403, "Not for your role", f"This needs the {self.role} role; you are signed in as {admin.role}. An owner can change that."
            )
        return Actor(role=admin.role, admin=admin, session_token=token)


class RequireToken:
    """Dependency of every /api/admin route: a live bearer token, at least `role`."""

    def __init__(self, role: AdminRole) -> None:
        self.role = role

    def __call__(
        self, site: SiteDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Actor:
        role = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            with site.sessions.begin() as session:
                role = token_role(session, credentials.credentials, now=site.wall_now())
        if role is None:
            raise HTTPException(
                401, "a valid API token is needed: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"}
            )
        if not role_allows(role, self.role):
            raise HTTPException(403, f"this needs a token with the {self.role} role; this one is {role}")
        return Actor(role=role)


def signin_cookie_name(site: Site) -> str:
    # `__Host-`: the browser takes it only from this very host, Secure, Path=/ and no Domain, so a
    # sibling subdomain cannot plant one (it needs https, hence the plain name on http).
    return "__Host-course_signin" if site.secure_cookies else "course_signin"


def admin_csrf(site: Site, request: Request) -> CsrfTokens:
    """The CSRF pair of an admin request: bound to the session the request brings, else to the
    sign-in cookie. Pages and checks both ask here, so they always agree on which."""
    return CsrfTokens(
        site.settings.secret_key,
        request,
        cookie_name=signin_cookie_name(site),
        purpose="admin",
        session_token=request.cookies.get(SESSION_COOKIE, ""),
    )


def check_csrf(site: Site, request: Request, submitted: str) -> None:
    if not admin_csrf(site, request).accepts(submitted):
        raise AdminPageError(
            403,
            "Please try that again",
            "This form had been open too long or your browser blocked our cookie. Reload the page and send it again.",
        )


ViewerPage = Annotated[Actor, Depends(RequirePage(AdminRole.VIEWER))]
EditorPage = Annotated[Actor, Depends(RequirePage(AdminRole.EDITOR))]
OwnerPage = Annotated[Actor, Depends(RequirePage(AdminRole.OWNER))]
ViewerToken = Annotated[Actor, Depends(RequireToken(AdminRole.VIEWER))]
EditorToken = Annotated[Actor, Depends(RequireToken(AdminRole.EDITOR))]
OwnerToken = Annotated[Actor, Depends(RequireToken(AdminRole.OWNER))]
