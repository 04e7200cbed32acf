"""The audit log in the admin: owners read and filter it (/admin/audit-log, GET /api/admin/audit-log);
nothing here edits it.

`AuditAdminActions` records every admin action that changes something (each POST, PUT, PATCH or
DELETE under /admin/ and /api/admin/ by a signed-in admin or a token: tokens, roles, invitations,
campaigns scheduled, paused, cancelled...) as "<METHOD> <route>" with its path values and answer
status, after the answer. Routes that write a more telling entry themselves (sign-in, imports,
exports, erasure, suppressions) are left to do so."""

from __future__ import annotations

import re

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from course.accounts.audit_log import AuditFilter, Who, entries, record
from course.accounts.credentials import looks_like_api_token, token_hash
from course.accounts.store import session_admin
from course.models import ApiToken
from course.web.admin.api import TOKEN_ROUTE_RESPONSES
from course.web.admin.auth import SESSION_COOKIE, OwnerPage, OwnerToken, SiteDep, limits_of
from course.web.admin.views import admin_page

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/admin", tags=["admin"], responses=TOKEN_ROUTE_RESPONSES)

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes that record their own, more telling entry.
SELF_RECORDING = (
    "/admin/login", "/admin/imports", "/admin/suppressions", "/api/admin/subscribers/import", "/admin/subscribers/bulk",
    "/api/admin/subscribers/bulk",
)  # fmt: skip
# …and by pattern: erasure (web and API). Every other subscriber change (tags, unsubscribe,
# resubscribe) gets the generic entry; bulk actions record their own (course.web.admin.bulk_jobs).
SELF_RECORDING_PATTERN = re.compile(r"^(/admin/subscribers/\d+/erase|/api/admin/subscribers/\d+)$")


class AuditAdminActions:
    """ASGI middleware: after each admin change request, one audit entry (see the module)."""

    def __init__(self, app: ASGIApp, *, site: Any) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope["method"] not in CHANGES or not path.startswith(("/admin/", "/api/admin/")) or path.startswith(SELF_RECORDING) or SELF_RECORDING_PATTERN.match(path):
            await self.app(scope, receive, send)
            return
        status = [0]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        route = scope.get("route")
        if route is not None and status[0] and status[0] not in (401, 404, 405):
            await run_in_threadpool(self._record, scope, getattr(route, "path", path), status[0])

    def _record(self, scope: Scope, route: str, status: int) -> None:
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}
        client = scope.get("client")
        ip = client[0] if client else ""
        with self.site.sessions.begin() as session:
            who = _who_of(session, self.site, headers, ip)
            if who is None:
                return  # nobody signed in: the request was refused before it did anything
            target = " ".join(f"{key}={value}" for key, value in (scope.get("path_params") or {}).items())
            record(session, who, f"{scope['method']} {route}", now=self.site.wall_now(), target=target, status=status)


def _who_of(session: Any, site: Any, headers: dict[str, str], ip: str) -> Who | None:
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        raw = authorization[7:].strip()
        token = session.query(ApiToken).filter(ApiToken.token_hash == token_hash(raw)).first() if looks_like_api_token(raw) else None
        return Who(actor=f"API token {token.id} ({token.name})", ip=ip) if token is not None else None
    cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
    raw_session = cookies.get(SESSION_COOKIE, "")
    admin = session_admin(session, raw_session, limits=limits_of(site), now=site.wall_now()) if raw_session else None
    return Who(actor=admin.email, admin_id=admin.admin_id, ip=ip) if admin is not None else None


def _parse_day(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=timezone.utc) if raw else None
    except ValueError:
        return None


def _cursor(raw: str) -> tuple[datetime, int] | None:
    at, _, entry_id = raw.partition("_")
    moment = _parse_day(at.replace(" ", "+")) if at else None
    return (moment, int(entry_id)) if moment is not None and entry_id.isdigit() else None


@router.get("/admin/audit-log", response_class=HTMLResponse)
def audit_page(
    request: Request, site: SiteDep, actor: OwnerPage, action: str = "", who: str = "", since: str = "", until: str = "", before: str = ""
) -> HTMLResponse:
    wanted = AuditFilter(action=action[:64], actor=who[:320], since=_parse_day(since), until=_parse_day(until))
    with site.sessions.begin() as session:
        found = entries(session, wanted, before=_cursor(before))
        following = f"{found[-1].at.isoformat()}_{found[-1].id}" if len(found) == 50 else ""
        return admin_page(
            site, request, "audit_log.html", actor=actor, entries=found, following=following,
            form={"action": action, "who": who, "since": since, "until": until},
        )  # fmt: skip


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the admin's address, an API token, or cli:<user>")
    admin_id: int | None
    ip: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page")


@api.get("/audit-log", response_model=AuditPageOut)
def api_audit_log(
    site: SiteDep,
    actor: OwnerToken,
    action: Annotated[str, Query(max_length=64, description="an action or its start, e.g. 'subscriber.' or 'POST /admin/tokens'")] = "",
    who: Annotated[str, Query(max_length=320, description="part of the actor")] = "",
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    cursor: Annotated[str, Query(max_length=80)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPageOut:
    """The admin audit log, newest first (owners)."""
    aware = lambda moment: moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # noqa: E731
    with site.sessions.begin() as session:
        found = entries(session, AuditFilter(action=action, actor=who, since=aware(since), until=aware(until)), before=_cursor(cursor), limit=limit)
        return AuditPageOut(
            entries=[AuditEntryOut.model_validate(entry, from_attributes=True) for entry in found],
            next_cursor=f"{found[-1].at.isoformat()}_{found[-1].id}" if len(found) == limit else None,
        )
