"""Signing in and out: the password form, the authenticator-code step, sign-out, and the forced
password change after a one-time password. Throttled per account and per IP address
(course.accounts.store.sign_in); every form is CSRF-checked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from course.accounts.audit_log import Who, record
from course.accounts.store import (
    AccountError,
    adopt_time_zone,
    SignIn,
    SignInOutcome,
    change_password,
    complete_second_factor,
    end_session,
    session_admin,
    sign_in,
)
from course.models import Admin
from course.web.admin.auth import (
    HOME_PATH,
    LOGIN_PATH,
    PASSWORD_PATH,
    SESSION_COOKIE,
    AdminPageError,
    RequirePage,
    SiteDep,
    check_csrf,
    limits_of,
    safe_next,
)
from course.models import AdminRole
from fastapi import Depends
from course.web.admin.auth import Actor
from course.web.admin.views import admin_page, clear_session_cookie, see_other, set_session_cookie
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]
PasswordChangeActor = Annotated[Actor, Depends(RequirePage(AdminRole.VIEWER, allow_password_change=True))]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _throttled(result: SignIn) -> AdminPageError:
    minutes = max(1, (result.retry_after_seconds + 59) // 60)
    who = "this account" if result.throttled_by == "account" else "your network address"
    return AdminPageError(
        429,
        "Too many failed sign-ins",
        f"Sign-in is paused for {who} after several wrong passwords or codes. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}; an owner can reset a forgotten password.",
        retry_after=result.retry_after_seconds,
    )


# Why the sign-in page is shown instead of what was asked for (SignInRequired.notice).
_NOTICES = {
    "ended": "Your session ended. Sign in again to go on.",
    "unsaved": "Your session ended before that form was sent, so nothing was saved. Sign in and send it again.",
}


def _login_form(site: Site, request: Request, *, next_path: str, email: str = "", error: str = "", status: int = 200) -> HTMLResponse:
    return admin_page(site, request, "login.html", actor=None, status=status, next_path=next_path, email=email, error=error)


@router.get("/admin", response_class=HTMLResponse)
@router.get("/admin/", response_class=HTMLResponse)
def admin_home() -> Response:
    return see_other(HOME_PATH)


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_page(request: Request, site: SiteDep, next: str = "", notice: str = "") -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        with site.sessions.begin() as session:
            admin = session_admin(session, token, limits=limits_of(site), now=site.wall_now())
        if admin is not None and not admin.second_factor_pending:
            return see_other(safe_next(next))
    return _login_form(site, request, next_path=safe_next(next), error=_NOTICES.get(notice, ""))


@router.post(LOGIN_PATH, response_class=HTMLResponse)
def login_submit(
    request: Request,
    site: SiteDep,
    email: TextField = "",
    password: TextField = "",
    next: TextField = "",
    time_zone: TextField = "",
    csrf_token: TextField = "",
) -> Response:
    check_csrf(site, request, csrf_token)
    with site.sessions.begin() as session:
        result = sign_in(
            session, email=email[:320], password=password, client_ip=_client_ip(request), limits=limits_of(site), now=site.wall_now()
        )
        if result.session_token is not None:
            # The browser's zone (admin.js fills it in) becomes the admin's if they have none yet.
            adopt_time_zone(session, email[:320], time_zone)
        action = {SignInOutcome.THROTTLED: "sign-in.throttled", SignInOutcome.INVALID: "sign-in.failed"}.get(result.outcome, "sign-in")
        record(session, Who(actor=email[:320], ip=_client_ip(request)), action, now=site.wall_now(), outcome=str(result.outcome))
    if result.outcome == SignInOutcome.THROTTLED:
        raise _throttled(result)
    if result.outcome == SignInOutcome.INVALID or result.session_token is None:
        return _login_form(
            site, request, next_path=safe_next(next), email=email[:320], status=401,
            error="That email address and password do not match an admin account.",
        )  # fmt: skip
    target = safe_next(next)
    if result.outcome == SignInOutcome.SECOND_FACTOR:
        target = f"{LOGIN_PATH}/code?next={target}"
    response = see_other(target)
    set_session_cookie(site, response, result.session_token)
    return response


@router.get(LOGIN_PATH + "/code", response_class=HTMLResponse)
def code_page(request: Request, site: SiteDep, next: str = "") -> Response:
    return admin_page(site, request, "login_code.html", actor=None, next_path=safe_next(next), error="")


@router.post(LOGIN_PATH + "/code", response_class=HTMLResponse)
def code_submit(
    request: Request, site: SiteDep, code: TextField = "", next: TextField = "", csrf_token: TextField = ""
) -> Response:
    check_csrf(site, request, csrf_token)
    with site.sessions.begin() as session:
        result = complete_second_factor(
            session,
            pending_token=request.cookies.get(SESSION_COOKIE, ""),
            code=code[:40],
            client_ip=_client_ip(request),
            limits=limits_of(site),
            now=site.wall_now(),
        )
        action = "sign-in.code" if result.outcome == SignInOutcome.SIGNED_IN else "sign-in.code-failed"
        record(session, Who(actor="(second factor)", ip=_client_ip(request)), action, now=site.wall_now(), outcome=str(result.outcome))
    if result.outcome == SignInOutcome.THROTTLED:
        raise _throttled(result)
    if result.outcome != SignInOutcome.SIGNED_IN or result.session_token is None:
        return admin_page(
            site, request, "login_code.html", actor=None, status=401, next_path=safe_next(next),
            error="That code is not right, was used already, or the sign-in took longer than five minutes. Try the "
            "next code, a recovery code, or sign in again.",
        )  # fmt: skip
    response = see_other(safe_next(next))
    set_session_cookie(site, response, result.session_token)
    return response


@router.post("/admin/logout", response_class=HTMLResponse)
def logout(request: Request, site: SiteDep, csrf_token: TextField = "") -> Response:
    check_csrf(site, request, csrf_token)
    with site.sessions.begin() as session:
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = see_other(LOGIN_PATH)
    clear_session_cookie(site, response)
    return response


@router.get(PASSWORD_PATH, response_class=HTMLResponse)
def password_page(request: Request, site: SiteDep, actor: PasswordChangeActor) -> HTMLResponse:
    return admin_page(site, request, "password.html", actor=actor, error="")


@router.post(PASSWORD_PATH, response_class=HTMLResponse)
def password_submit(
    request: Request,
    site: SiteDep,
    actor: PasswordChangeActor,
    current_password: TextField = "",
    new_password: TextField = "",
    repeat_password: TextField = "",
    csrf_token: TextField = "",
) -> Response:
    check_csrf(site, request, csrf_token)
    error = ""
    if new_password != repeat_password:
        error = "The two new passwords are not the same."
    else:
        try:
            with site.sessions.begin() as session:
                admin = session.get(Admin, actor.admin.admin_id if actor.admin else 0)
                if admin is None:
                    raise AccountError("your account is gone")
                change_password(session, admin, current=current_password, new=new_password, keep_session=actor.session_token)
        except AccountError as exc:
            error = str(exc).capitalize() + "."
    if error:
        return admin_page(site, request, "password.html", actor=actor, status=422, error=error)
    return see_other("/admin/account?changed=password")
