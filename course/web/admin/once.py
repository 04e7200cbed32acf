"""Secrets shown once, after a redirect: a new API token, a one-time password, recovery codes.

Every admin form post answers with a redirect (post/redirect/get), so a reload repeats nothing. A
post that makes a secret cannot put it in the URL it redirects to (URLs end up in logs and
history), so it hands the secret to the browser in a short-lived cookie instead: signed with the
secret key, bound to the admin who made it, HttpOnly, SameSite=Strict, limited to /admin/once, and
gone after a few minutes or after the page has shown it once, whichever comes first. A reload of
that page then says the secret was shown already."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from course.web.admin.auth import Actor, SiteDep, ViewerPage
from course.web.admin.views import admin_page, see_other
from course.web.site import Site

router = APIRouter(include_in_schema=False)

ONCE_PATH = "/admin/once"
ONCE_COOKIE = "course_once"
ONCE_MAX_AGE_SECONDS = 300


def _signer(site: Site) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(site.settings.secret_key, salt="admin-shown-once")


def show_once(site: Site, actor: Actor, template: str, **context: Any) -> RedirectResponse:
    """A redirect to the page that shows `template` with `context` once, to this admin only."""
    response = see_other(ONCE_PATH)
    sealed = _signer(site).dumps({"admin": actor.admin.admin_id if actor.admin else None, "template": template, "context": context})
    response.set_cookie(
        ONCE_COOKIE, sealed, max_age=ONCE_MAX_AGE_SECONDS, path=ONCE_PATH, httponly=True, samesite="strict",
        secure=site.secure_cookies,
    )  # fmt: skip
    return response


@router.get(ONCE_PATH, response_class=HTMLResponse)
def shown_once(request: Request, site: SiteDep, actor: ViewerPage) -> Response:
    sealed = request.cookies.get(ONCE_COOKIE, "")
    try:
        held = _signer(site).loads(sealed, max_age=ONCE_MAX_AGE_SECONDS) if sealed else None
    except BadSignature:
        held = None
    if held is None or held.get("admin") != (actor.admin.admin_id if actor.admin else None):
        response = admin_page(
            site, request, "message.html", actor=actor, status=410, title="Shown once already",
            message="A new token, password or set of recovery codes is shown once, right after it is made. "
            "Make a new one if it was not saved.",
        )  # fmt: skip
    else:
        response = admin_page(site, request, held["template"], actor=actor, **held["context"])
    response.delete_cookie(ONCE_COOKIE, path=ONCE_PATH, httponly=True, samesite="strict", secure=site.secure_cookies)
    response.headers["cache-control"] = "no-store"
    return response
