"""The invitee's side of an invitation: the link from the mail opens a page to choose a password,
which makes the admin and signs them in. Public routes (the link is the credential): the link is
signed (its purpose's salt, the secret), names the invitation and its current nonce, and works
once, until the invitation's expiry on the wall clock (course.accounts.store.accept_invitation)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from course.accounts.store import AccountError, InvitationUnusable, accept_invitation, open_invitation, open_session
from course.delivery.links import MAX_ID, InvalidLink, LinkPurpose
from course.web.admin.auth import HOME_PATH, AdminPageError, SiteDep, check_csrf
from course.web.admin.views import admin_page, see_other, set_session_cookie
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]
INVITATION_PATH = "/admin/invitation/{token}"


def _read_link(site: Site, token: str) -> tuple[int, str]:
    """The invitation id and nonce a genuine link carries; a 400 page for anything else."""
    try:
        payload: Any = site.signer.read(LinkPurpose.ADMIN_INVITATION, token[:200])
    except InvalidLink:
        payload = None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], int)
        or isinstance(payload[0], bool)
        or not 1 <= payload[0] <= MAX_ID
        or not isinstance(payload[1], str)
    ):
        raise AdminPageError(
            400, "This link does not work", "It may have been cut short on its way here. Open it straight from the email."
        )
    return payload[0], payload[1]


def _unusable(exc: InvitationUnusable) -> AdminPageError:
    message = str(exc)
    return AdminPageError(
        410 if exc.gone else 400, "This invitation link no longer works", f"{message[:1].upper()}{message[1:]}."
    )


def _form(site: Site, request: Request, *, email: str, role: str, error: str = "", status: int = 200) -> HTMLResponse:
    return admin_page(site, request, "invitation.html", actor=None, status=status, email=email, role=role, error=error)


@router.get(INVITATION_PATH, response_class=HTMLResponse)
def invitation_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    invitation_id, nonce = _read_link(site, token)
    try:
        with site.sessions.begin() as session:
            invitation = open_invitation(session, invitation_id, nonce, now=site.wall_now())
            email, role = invitation.email, invitation.role
    except InvitationUnusable as exc:
        raise _unusable(exc) from None
    return _form(site, request, email=email, role=role)


@router.post(INVITATION_PATH, response_class=HTMLResponse)
def invitation_accept(
    token: str, request: Request, site: SiteDep, password: TextField = "", repeat_password: TextField = "", csrf_token: TextField = ""
) -> Response:
    check_csrf(site, request, csrf_token)
    invitation_id, nonce = _read_link(site, token)
    try:
        with site.sessions.begin() as session:
            invitation = open_invitation(session, invitation_id, nonce, now=site.wall_now())
            email, role = invitation.email, invitation.role
            if password != repeat_password:
                raise AccountError("the two passwords are not the same")
            admin = accept_invitation(session, invitation_id, nonce, password=password, now=site.wall_now())
            # The session is timed like every sign-in's (login.py).
            session_token = open_session(session, admin.id, now=site.wall_now())
    except InvitationUnusable as exc:
        raise _unusable(exc) from None
    except AccountError as exc:
        message = str(exc)
        return _form(site, request, email=email, role=role, status=422, error=f"{message[:1].upper()}{message[1:]}.")
    response = see_other(HOME_PATH)
    set_session_cookie(site, response, session_token)
    return response
