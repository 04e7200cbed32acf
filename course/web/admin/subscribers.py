"""The admin's Subscribers pages: the list (search, filters as a bookmarkable URL, keyset pages),
bulk actions on a filter's whole result, and one subscriber's page (details, tags, enrollments
with progress, timeline) with what an editor does to them. Viewers see; editors act. The rules
live in course.audience.directory; this module only reads forms and answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from course.audience.directory import (
    BULK_ACTIONS,
    STATUSES,
    NO_LANGUAGE,
    BulkResult,
    DirectoryError,
    SubscriberFilter,
    admin_resubscribe,
    admin_unsubscribe,
    enrol_all,
    tag_names,
    count_matching,
    list_subscribers,
    parse_cursor,
    parse_filter,
    subscriber_detail,
    add_tag,
    remove_tag,
)
from course.i18n import SUPPORTED_LANGUAGES
from course.models import Course, Subscriber
from course.web.admin.bulk_jobs import run_bulk
from course.web.admin.auth import Actor, AdminPageError, EditorPage, SiteDep, ViewerPage, check_csrf
from course.web.admin.views import admin_page, see_other
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]
SubscriberId = Annotated[int, Path(ge=1, le=2**63 - 1)]
FILTER_FIELDS = ("q", "status", "tag", "course", "lesson", "from", "to", "timezone", "language")
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French"}


def _choices(site: Site) -> dict[str, object]:
    with site.sessions.begin() as session:
        return {
            "courses": list(session.execute(select(Course.slug, Course.title).order_by(Course.title)).all()),
            "tags": tag_names(session, limit=500),
            "statuses": STATUSES,
            "languages": [*((code, LANGUAGE_NAMES.get(code, code)) for code in SUPPORTED_LANGUAGES), (NO_LANGUAGE, "Not known")],
        }


_BULK_DONE = {
    "tag-add": "tagged {changed} of the {matched} subscribers the filter matches (the others had the tag)",
    "tag-remove": "removed the tag from {changed} of the {matched} subscribers the filter matches",
    "enrol": "enrolled {changed} of the {matched} subscribers the filter matches (the others are in the course already or not receiving mail)",
    "unsubscribe": "unsubscribed {changed} of the {matched} subscribers the filter matches (the others were not receiving mail)",
}


def _done_message(raw: str) -> str:
    """The notice after a bulk action, from its redirect's `done=action:changed:matched`."""
    action, _, counts = raw.partition(":")
    changed, _, matched = counts.partition(":")
    if action not in _BULK_DONE or not changed.isdigit() or not matched.isdigit():
        return ""
    return "Done: " + _BULK_DONE[action].format(changed=f"{int(changed):,}", matched=f"{int(matched):,}") + "."


def source_label(source: str | None) -> str:
    """Where a subscriber came from, in words (subscribers.source)."""
    if not source:
        return "not recorded"
    kind, _, which = source.partition(":")
    if kind == "import" and which.isdigit():
        return f"import {which}"
    return {"form": "the signup form", "api": "the signup API", "admin": "an admin", "cli": "the command line"}.get(kind, source)


def _list_page(
    site: Site, request: Request, actor: Actor, *, params: dict[str, str] | None = None, status: int = 200, error: str = ""
) -> HTMLResponse:
    if params is None:
        params = {name: request.query_params.get(name, "")[:300] for name in (*FILTER_FIELDS, "cursor")}
    fields: dict[str, str] = {}
    chosen, page, matched = SubscriberFilter(), None, None
    count_cap = site.settings.bulk_inline_limit
    try:
        chosen = parse_filter(params)
        cursor = parse_cursor(params["cursor"])
        with site.sessions.begin() as session:
            page = list_subscribers(session, chosen, cursor=cursor)
            # Counted up to the inline bulk limit, then "more than" it: past it the exact figure
            # changes nothing the admin can do here (the action runs as a job, whose page counts
            # every match), while counting further costs a probe per match: at 1M, 100,000 matches
            # of "lesson reached" took 390 ms, 10,000 take 29 (docs/performance.md).
            matched = count_matching(session, chosen, at_most=count_cap) if not chosen.is_everyone or cursor is None else None
    except DirectoryError as exc:
        error, fields, status = error or str(exc), exc.fields, 400
    return admin_page(
        site, request, "subscribers.html", actor=actor, status=status, form=params, chosen=chosen, page=page,
        matched=matched, matched_more=matched is not None and matched > count_cap, count_cap=count_cap, error=error, fields=fields, done=_done_message(request.query_params.get("done", "")[:60]),
        filter_query=chosen.query_string(), first_page=not params["cursor"], can_edit=actor.may("editor"),  # type: ignore[arg-type]
        bulk_actions=BULK_ACTIONS, bulk_inline_limit=site.settings.bulk_inline_limit, **_choices(site),
    )  # fmt: skip


@router.get("/admin/subscribers", response_class=HTMLResponse)
def subscribers_page(request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    return _list_page(site, request, actor)


# Before /admin/subscribers/{subscriber_id}: "bulk" is not an id.
@router.post("/admin/subscribers/bulk", response_class=HTMLResponse)
def subscribers_bulk(
    request: Request, site: SiteDep, actor: EditorPage, action: TextField = "", value: TextField = "", csrf_token: TextField = "",
    q: TextField = "", status: TextField = "", tag: TextField = "", course: TextField = "", lesson: TextField = "",
    timezone: TextField = "", language: TextField = "", signed_up_from: Annotated[str, Form(alias="from")] = "", signed_up_to: Annotated[str, Form(alias="to")] = "",
) -> Response:  # fmt: skip
    """One action on every subscriber the filter (sent along as hidden fields) matches."""
    check_csrf(site, request, csrf_token)
    params = {"q": q, "status": status, "tag": tag, "course": course, "lesson": lesson, "from": signed_up_from, "to": signed_up_to, "timezone": timezone, "language": language}
    try:
        chosen = parse_filter({name: value[:300] for name, value in params.items()})
        result = run_bulk(site, request, actor, chosen, action, value[:500])
    except DirectoryError as exc:
        return _list_page(site, request, actor, params={**params, "cursor": ""}, status=422, error=str(exc))
    if not isinstance(result, BulkResult):  # too many for the request: a job, followed on its page
        return see_other(f"/admin/bulk-jobs/{result[0].id}")
    done = f"{result.action}:{result.changed}:{result.matched}"
    query = parse_filter(params).query_string(done=done)
    return see_other(f"/admin/subscribers?{query}")


def _detail_page(site: Site, request: Request, actor: Actor, subscriber_id: int, *, status: int = 200, error: str = "") -> HTMLResponse:
    with site.sessions.begin() as session:
        detail = subscriber_detail(session, subscriber_id)
    if detail is None:
        raise AdminPageError(404, "No such subscriber", f"There is no subscriber with id {subscriber_id}: erased or purged, or never there.")
    return admin_page(
        site, request, "subscriber.html", actor=actor, status=status, subscriber=detail, error=error,
        done=request.query_params.get("done", "")[:40], can_edit=actor.may("editor"), **_choices(site),  # type: ignore[arg-type]
        language_names=LANGUAGE_NAMES, source_label=source_label(detail.source),
    )  # fmt: skip


@router.get("/admin/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    return _detail_page(site, request, actor, subscriber_id)


@router.post("/admin/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_change(
    subscriber_id: SubscriberId, request: Request, site: SiteDep, actor: EditorPage,
    change: TextField = "", reason: TextField = "", tag: TextField = "", course: TextField = "", csrf_token: TextField = "",
) -> Response:  # fmt: skip
    """Unsubscribe, resubscribe (with a reason), add or remove a tag, enrol in a course."""
    check_csrf(site, request, csrf_token)
    one = select(Subscriber.id).where(Subscriber.id == subscriber_id)  # the directory's actions take a SELECT of ids
    try:
        with site.sessions.begin() as session:
            if change == "unsubscribe":
                admin_unsubscribe(session, subscriber_id, actor=actor.label, reason=reason[:600], now=site.now())
            elif change == "resubscribe":
                admin_resubscribe(session, subscriber_id, actor=actor.label, reason=reason[:600], now=site.now())
            elif change == "tag-add":
                add_tag(session, one, tag[:100], actor=actor.label, now=site.now())
            elif change == "tag-remove":
                remove_tag(session, one, tag[:100], actor=actor.label, now=site.now())
            elif change == "enrol":
                if not enrol_all(session, one, course[:100], actor=actor.label, now=site.now()):
                    raise DirectoryError("nothing to do: already in that course, or not receiving mail")
            else:
                raise DirectoryError(f"unknown change {change[:40]!r}")
    except DirectoryError as exc:
        return _detail_page(site, request, actor, subscriber_id, status=422, error=str(exc))
    return see_other(f"/admin/subscribers/{subscriber_id}?done={change}")

