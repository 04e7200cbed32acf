"""How an admin page is answered: the admin layout around a template, the session cookie, and the
admin's error page. Shared by the route modules of course/web/admin."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from course.web.admin.auth import SESSION_COOKIE, SESSION_COOKIE_PATH, Actor, AdminPageError, admin_csrf
from course.web.security import PAGE_CSP
from course.web.site import Site

# The public pages' policy, plus fetches to our own origin (the progress poll) and frames of our own
# pages (the email preview).
ADMIN_CSP = PAGE_CSP.replace("default-src 'none';", "default-src 'none'; connect-src 'self'; frame-src 'self';")

# The navigation, in order: (path, label, what it needs)
NAV = (
    ("/admin/dashboard", "Dashboard", "viewer"),
    ("/admin/campaigns", "Campaigns", "viewer"),
    ("/admin/subscribers", "Subscribers", "viewer"),
    ("/admin/courses", "Courses", "viewer"),
    ("/admin/imports", "Import", "editor"),
    ("/admin/suppressions", "Suppressions", "viewer"),
    ("/admin/admins", "Admins", "owner"),
    ("/admin/tokens", "API tokens", "owner"),
    ("/admin/audit-log", "Audit log", "owner"),
    ("/admin/account", "Your account", "viewer"),
)


def admin_page(
    site: Site, request: Request, template: str, *, actor: Actor | None, status: int = 200, **context: Any
) -> HTMLResponse:
    nav = [
        {"path": path, "label": label, "current": request.url.path.startswith(path)}
        for path, label, role in NAV
        if actor is not None and actor.admin is not None and actor.may(role)  # type: ignore[arg-type]
    ]
    response = site.page(
        request, f"admin/{template}", status=status, csp=ADMIN_CSP, csrf=admin_csrf(site, request), actor=actor, nav=nav, **context
    )
    response.headers["x-frame-options"] = "DENY"
    return response


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def set_session_cookie(site: Site, response: RedirectResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=site.settings.admin_session_max_hours * 3600,
        path=SESSION_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=site.secure_cookies,
    )


def clear_session_cookie(site: Site, response: RedirectResponse) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=SESSION_COOKIE_PATH, httponly=True, samesite="lax", secure=site.secure_cookies
    )


def error_page(site: Site, request: Request, error: AdminPageError, actor: Actor | None = None) -> HTMLResponse:
    headers = {"retry-after": str(error.retry_after)} if error.retry_after else None
    response = admin_page(
        site, request, "message.html", actor=actor, status=error.status, title=error.title, message=error.message
    )
    if headers:
        response.headers.update(headers)
    return response
