"""GDPR in the admin and the API: a subscriber's data as JSON (access request), erasure by an owner,
and the suppression list (any role reads it, with search; an owner removes an entry with a reason).
Each action is recorded in the audit log, naming the subscriber by id, never by address."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response

from course.accounts.audit_log import record
from course.audience.erasure import ErasureError, access_export, erase, find
from course.audience.suppression import list_suppressed, remove_suppression
from course.web.admin.api import TOKEN_ROUTE_RESPONSES
from course.web.admin.auth import AdminPageError, OwnerPage, OwnerToken, SiteDep, ViewerPage, check_csrf
from course.web.admin.imports import who
from course.web.admin.views import admin_page, see_other

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/admin", tags=["admin"], responses=TOKEN_ROUTE_RESPONSES)
SubscriberId = Annotated[int, Path(ge=1, le=2**63 - 1)]
EntryId = Annotated[int, Path(ge=1, le=2**31 - 1)]
TextField = Annotated[str, Form(max_length=2000)]


def _json(data: dict[str, Any], subscriber_id: int) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
        headers={"content-disposition": f'attachment; filename="subscriber-{subscriber_id}.json"', "cache-control": "no-store"},
    )  # fmt: skip


def _export(site: Any, request: Request, actor: Any, subscriber_id: int) -> dict[str, Any]:
    with site.sessions.begin() as session:
        try:
            data = access_export(session, find(session, subscriber_id))
        except ErasureError:
            raise HTTPException(404, f"no subscriber {subscriber_id}") from None
        record(session, who(request, actor), "subscriber.access-export", now=site.wall_now(), target=f"subscriber {subscriber_id}")
        return data


def _erase(site: Any, request: Request, actor: Any, subscriber_id: int) -> bool:
    with site.sessions.begin() as session:
        try:
            subscriber = find(session, subscriber_id)
        except ErasureError:
            raise HTTPException(404, f"no subscriber {subscriber_id}") from None
        erased = erase(session, subscriber, secret=site.settings.secret_key, now=site.now(), admin_id=who(request, actor).admin_id)
        record(session, who(request, actor), "subscriber.erase", now=site.wall_now(), target=f"subscriber {subscriber_id}", erased=erased)
        return erased


@router.get("/admin/subscribers/{subscriber_id}/export.json")
def export_page(subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: OwnerPage) -> Response:
    try:
        return _json(_export(site, request, actor, subscriber_id), subscriber_id)
    except HTTPException:
        raise AdminPageError(404, "No such subscriber", f"There is no subscriber with id {subscriber_id}.") from None


@router.post("/admin/subscribers/{subscriber_id}/erase")
def erase_page(subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: OwnerPage, csrf_token: TextField = "") -> Response:
    check_csrf(site, request, csrf_token)
    try:
        _erase(site, request, actor, subscriber_id)
    except HTTPException:
        raise AdminPageError(404, "No such subscriber", f"There is no subscriber with id {subscriber_id}.") from None
    return see_other("/admin/suppressions?notice=erased")


@router.get("/admin/suppressions", response_class=HTMLResponse)
def suppressions_page(request: Request, site: SiteDep, actor: ViewerPage, q: str = "", notice: str = "") -> HTMLResponse:
    with site.sessions.begin() as session:
        found = list_suppressed(session, secret=site.settings.secret_key, query=q.strip()[:320])
        notices = {"erased": "Erased: their address is now only a hash on this list.", "removed": "Removed from the list."}
        return admin_page(
            site, request, "suppressions.html", actor=actor, entries=found, query=q[:320], notice=notices.get(notice, ""),
            can_remove=actor.may("owner"),  # type: ignore[arg-type]
        )  # fmt: skip


@router.post("/admin/suppressions/{entry_id}/remove")
def remove_page(entry_id: EntryId, request: Request, site: SiteDep, actor: OwnerPage, reason: TextField = "", csrf_token: TextField = "") -> Response:
    check_csrf(site, request, csrf_token)
    if not reason.strip():
        raise AdminPageError(400, "Say why", "Removing an address from the suppression list needs a reason; it goes into the audit log.")
    with site.sessions.begin() as session:
        entry = remove_suppression(session, entry_id)
        if entry is None:
            raise AdminPageError(404, "No such entry", f"There is no suppression entry {entry_id}.")
        record(
            session, who(request, actor), "suppression.remove", now=site.wall_now(), target=f"suppression {entry_id}",
            was=entry.reason, reason=reason.strip(),
        )  # fmt: skip
    return see_other("/admin/suppressions?notice=removed")


@api.get("/subscribers/{subscriber_id}/export", responses={404: {"description": "no such subscriber"}})
def api_export(subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: OwnerToken) -> dict[str, Any]:
    """Everything kept about one subscriber (access request): profile, tags, enrollments, events, deliveries."""
    return _export(site, request, actor, subscriber_id)


@api.delete("/subscribers/{subscriber_id}", status_code=204, responses={404: {"description": "no such subscriber"}})
def api_erase(subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: OwnerToken) -> Response:
    """Erase a subscriber's personal data (owners). Delivery rows stay, anonymised; the address is
    kept only as a keyed hash on the suppression list. Erasing twice changes nothing."""
    _erase(site, request, actor, subscriber_id)
    return Response(status_code=204)
