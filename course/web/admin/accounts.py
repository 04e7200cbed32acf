"""Account pages: owners invite and manage admins and manage API tokens; every admin manages their
own password, time zone and second factor. Secrets (a one-time password, a new token, recovery codes) are shown once, on the
page that answers the form, and never stored in clear."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
import segno
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup, escape

from course.accounts.credentials import CredentialError, new_totp_secret, parse_role, totp_uri
from course.accounts.store import (
    AccountError,
    create_api_token,
    disable_totp,
    enable_totp,
    invite_admin,
    list_admins,
    list_api_tokens,
    pending_invitations,
    replace_recovery_codes,
    resend_invitation,
    reset_password,
    revoke_api_token,
    revoke_invitation,
    set_disabled,
    set_role,
    set_time_zone,
    unused_recovery_codes,
)
from course.accounts.credentials import verify_password
from course.web.admin.times import zone_names
from course.models import Admin, AdminRole
from course.web.admin.auth import Actor, AdminPageError, OwnerPage, SiteDep, ViewerPage, check_csrf
from course.web.admin.once import show_once
from course.web.admin.views import admin_page, see_other
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]
ROLES = [role.value for role in AdminRole]
_TOTP_SETUP_MAX_AGE = 15 * 60
_QR_TITLE = "QR code of the authenticator key: scan it with the app"


# --- admins (owner) ------------------------------------------------------------------------------


def _admins_page(site: Site, request: Request, actor: Actor, *, status: int = 200, **context: object) -> HTMLResponse:
    with site.sessions.begin() as session:
        admins = list_admins(session)
        return admin_page(
            site, request, "admins.html", actor=actor, status=status, admins=admins, roles=ROLES,
            invitations=pending_invitations(session), wall_now=site.wall_now(),
            invitation_hours=site.settings.admin_invitation_hours, sent=request.query_params.get("sent", ""),
            form=context.pop("form", {"email": "", "role": "editor"}), error=context.pop("error", ""), **context,
        )  # fmt: skip


@router.get("/admin/admins", response_class=HTMLResponse)
def admins_page(request: Request, site: SiteDep, actor: OwnerPage) -> HTMLResponse:
    return _admins_page(site, request, actor)


# --- invitations (owner) -------------------------------------------------------------------------
# An invitation's times are wall-clock times (its link's expiry is a security rule); its mail's
# ledger row is due on the project's clock, which the dispatcher reads.


def _valid_for(site: Site) -> timedelta:
    return timedelta(hours=site.settings.admin_invitation_hours)


@router.post("/admin/invitations", response_class=HTMLResponse)
def invitation_create(
    request: Request, site: SiteDep, actor: OwnerPage, email: TextField = "", role: TextField = "", csrf_token: TextField = ""
) -> Response:
    """Invite someone by email: they get a one-time sign-in link and choose their own password."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            invite_admin(
                session, email=email[:320], role=parse_role(role), invited_by=actor.admin.admin_id if actor.admin else None,
                valid_for=_valid_for(site), now=site.wall_now(), due_at=site.now(),
            )  # fmt: skip
    except (AccountError, CredentialError) as exc:
        return _admins_page(site, request, actor, status=422, error=str(exc), form={"email": email[:320], "role": role})
    return see_other("/admin/admins?sent=invitation")


@router.post("/admin/invitations/{invitation_id}", response_class=HTMLResponse)
def invitation_change(
    invitation_id: int, request: Request, site: SiteDep, actor: OwnerPage, change: TextField = "", csrf_token: TextField = ""
) -> Response:
    """Re-send (a new link and expiry: earlier links stop working) or revoke a pending invitation."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            if change == "resend":
                resend_invitation(session, invitation_id, valid_for=_valid_for(site), now=site.wall_now(), due_at=site.now())
            elif change == "revoke":
                revoke_invitation(session, invitation_id, now=site.wall_now())
            else:
                raise AccountError(f"unknown change {change!r}")
    except AccountError as exc:
        return _admins_page(site, request, actor, status=422, error=str(exc))
    return see_other(f"/admin/admins?sent={'invitation' if change == 'resend' else 'revoked'}")


def _owner_change(site: Site, request: Request, actor: Actor, change: str, admin_id: int, role: str = "") -> Response:
    try:
        with site.sessions.begin() as session:
            if change == "role":
                set_role(session, admin_id, parse_role(role))
            elif change in ("disable", "enable"):
                if change == "disable" and actor.admin and actor.admin.admin_id == admin_id:
                    raise AccountError("you cannot disable your own account")
                set_disabled(session, admin_id, disabled=change == "disable", now=site.wall_now())
            elif change == "reset-password":
                admin, one_time = reset_password(session, admin_id)
                email = admin.email
            else:
                raise AccountError(f"unknown change {change!r}")
    except (AccountError, CredentialError) as exc:
        return _admins_page(site, request, actor, status=422, error=str(exc))
    if change == "reset-password":
        return show_once(
            site, actor, "secret_once.html", title=f"New password for {email}",
            what="one-time password", secret=one_time, back="/admin/admins",
            note="Their sessions have ended. They choose their own password when they sign in with this one.",
        )  # fmt: skip
    return see_other("/admin/admins")


@router.post("/admin/admins/{admin_id}", response_class=HTMLResponse)
def admin_change(
    admin_id: int,
    request: Request,
    site: SiteDep,
    actor: OwnerPage,
    change: TextField = "",
    role: TextField = "",
    csrf_token: TextField = "",
) -> Response:
    check_csrf(site, request, csrf_token)
    return _owner_change(site, request, actor, change, admin_id, role)


# --- API tokens (owner) --------------------------------------------------------------------------


def _tokens_page(site: Site, request: Request, actor: Actor, *, status: int = 200, error: str = "") -> HTMLResponse:
    with site.sessions.begin() as session:
        return admin_page(
            site, request, "tokens.html", actor=actor, status=status, tokens=list_api_tokens(session), roles=ROLES, error=error
        )


@router.get("/admin/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, site: SiteDep, actor: OwnerPage) -> HTMLResponse:
    return _tokens_page(site, request, actor)


@router.post("/admin/tokens", response_class=HTMLResponse)
def token_create(
    request: Request, site: SiteDep, actor: OwnerPage, name: TextField = "", role: TextField = "", csrf_token: TextField = ""
) -> Response:
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            token, raw = create_api_token(
                session, name=name, role=parse_role(role), created_by=actor.admin.admin_id if actor.admin else None, now=site.wall_now()
            )
            label, token_role = token.name, token.role
    except (AccountError, CredentialError) as exc:
        return _tokens_page(site, request, actor, status=422, error=str(exc))
    return show_once(
        site, actor, "secret_once.html", title=f"Token “{label}” ({token_role})",
        what="API token", secret=raw, back="/admin/tokens",
        note="Copy it now: it is not shown again. Send it as “Authorization: Bearer …” to /api/admin/.",
    )  # fmt: skip


@router.post("/admin/tokens/{token_id}/revoke", response_class=HTMLResponse)
def token_revoke(token_id: int, request: Request, site: SiteDep, actor: OwnerPage, csrf_token: TextField = "") -> Response:
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            revoke_api_token(session, token_id, now=site.wall_now())
    except AccountError as exc:
        raise AdminPageError(404, "No such token", str(exc)) from None
    return see_other("/admin/tokens")


# --- your own account ----------------------------------------------------------------------------


def qr_code_svg(uri: str, *, title: str) -> Markup:
    """The QR code of `uri` as an inline SVG drawn here (no image service sees the secret): a full QR
    code (authenticator apps read no Micro QR), medium error correction, dark on white with the
    standard four-module quiet zone, named for screen readers by its title."""
    svg = segno.make_qr(uri, error="m").svg_inline(scale=5, dark="#111", light="#fff", title=str(escape(title)), svgclass="qr")
    return Markup(svg.replace("<svg ", '<svg role="img" aria-label="' + str(escape(title)) + '" ', 1))


def _setup_signer(site: Site) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(site.settings.secret_key, salt="admin-totp-setup")


def _account_page(site: Site, request: Request, actor: Actor, *, status: int = 200, **context: object) -> HTMLResponse:
    admin_id = actor.admin.admin_id if actor.admin else 0
    with site.sessions.begin() as session:
        admin = session.get(Admin, admin_id)
        codes_left = unused_recovery_codes(session, admin_id)
        return admin_page(
            site, request, "account.html", actor=actor, status=status, admin=admin, codes_left=codes_left, zones=zone_names(),
            changed=request.query_params.get("changed", ""), error=context.pop("error", ""), **context,
        )  # fmt: skip


@router.get("/admin/account", response_class=HTMLResponse)
def account_page(request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    return _account_page(site, request, actor)


@router.post("/admin/account/time-zone", response_class=HTMLResponse)
def time_zone_change(request: Request, site: SiteDep, actor: ViewerPage, time_zone: TextField = "", csrf_token: TextField = "") -> Response:
    """The zone this admin's pages show times in; blank: UTC (the page then offers the browser's)."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            set_time_zone(session, actor.admin.admin_id if actor.admin else 0, time_zone[:100])
    except AccountError as exc:
        return _account_page(site, request, actor, status=422, error=f"{str(exc)[:1].upper()}{str(exc)[1:]}: nothing was changed.")
    return see_other("/admin/account?changed=time-zone")


@router.get("/admin/account/second-factor", response_class=HTMLResponse)
def second_factor_start(request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    """Step 1: a new secret, shown as a key, an otpauth link and its QR code; nothing changes until
    a code from it comes back (step 2), so a half-done setup cannot lock anyone out."""
    secret = new_totp_secret()
    email = actor.admin.email if actor.admin else ""
    response = admin_page(
        site, request, "totp_setup.html", actor=actor, secret=secret, uri=totp_uri(secret, email),
        qr=qr_code_svg(totp_uri(secret, email), title=_QR_TITLE), sealed=_setup_signer(site).dumps(secret), error="",
    )  # fmt: skip
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/admin/account/second-factor", response_class=HTMLResponse)
def second_factor_start_posted(request: Request, site: SiteDep, actor: ViewerPage, csrf_token: TextField = "") -> Response:
    """An older account page's button: to the setup page (post/redirect/get)."""
    check_csrf(site, request, csrf_token)
    return see_other("/admin/account/second-factor")


@router.post("/admin/account/second-factor/confirm", response_class=HTMLResponse)
def second_factor_confirm(
    request: Request, site: SiteDep, actor: ViewerPage, sealed: TextField = "", code: TextField = "", csrf_token: TextField = ""
) -> Response:
    check_csrf(site, request, csrf_token)
    try:
        secret = _setup_signer(site).loads(sealed, max_age=_TOTP_SETUP_MAX_AGE)
    except BadSignature:
        raise AdminPageError(400, "Start the setup again", "That setup page was open longer than 15 minutes.") from None
    try:
        with site.sessions.begin() as session:
            codes = enable_totp(session, actor.admin.admin_id if actor.admin else 0, secret=secret, code=code[:20], now=site.wall_now())
    except AccountError as exc:
        email = actor.admin.email if actor.admin else ""
        return admin_page(
            site, request, "totp_setup.html", actor=actor, status=422, secret=secret, uri=totp_uri(secret, email),
            qr=qr_code_svg(totp_uri(secret, email), title=_QR_TITLE), sealed=sealed, error=str(exc).capitalize() + ".",
        )  # fmt: skip
    return show_once(site, actor, "recovery_codes.html", codes=codes)


@router.post("/admin/account/second-factor/change", response_class=HTMLResponse)
def second_factor_change(
    request: Request, site: SiteDep, actor: ViewerPage, change: TextField = "", password: TextField = "", csrf_token: TextField = ""
) -> Response:
    """Turn the second factor off, or replace the recovery codes: both ask for the password again."""
    check_csrf(site, request, csrf_token)
    admin_id = actor.admin.admin_id if actor.admin else 0
    with site.sessions.begin() as session:
        admin = session.get(Admin, admin_id)
        if admin is None or not verify_password(admin.password_hash, password):
            wrong = True
        else:
            wrong = False
            if change == "off":
                disable_totp(session, admin_id)
            elif change == "new-codes" and admin.totp_secret:
                codes = replace_recovery_codes(session, admin_id)
                return show_once(site, actor, "recovery_codes.html", codes=codes)
    if wrong:
        return _account_page(site, request, actor, status=422, error="That password is not right: nothing was changed.")
    return see_other("/admin/account?changed=second-factor")
