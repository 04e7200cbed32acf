"""Bulk jobs in the admin: a bulk action over more subscribers than a request runs inline
(settings.bulk_inline_limit) is started here as a job the worker applies in batches
(course.audience.bulk_jobs), and followed on its page, which refreshes itself while it runs
(admin.js replaces its progress part in place every few seconds; without the script, a link reloads it) — or through the API:
`POST /api/admin/subscribers/bulk` answers 200 with the result when it ran inline, 202 with the
job's URL when it became a job; `GET /api/admin/bulk-jobs/{id}` follows it. Each start is one
audit entry, in the job's own transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from course.accounts.audit_log import Who, record
from course.audience.bulk_jobs import percent, start_bulk_job
from course.audience.directory import BulkResult, DirectoryError, SubscriberFilter, TooManyForInline, bulk_action, parse_filter
from course.models import BulkJob, BulkJobState
from course.web.admin.api import ErrorOut, TOKEN_ROUTE_RESPONSES
from course.web.admin.auth import Actor, AdminPageError, EditorToken, SiteDep, ViewerPage, ViewerToken
from course.web.admin.views import admin_page
from course.web.site import Site

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/admin", tags=["admin"], responses=TOKEN_ROUTE_RESPONSES)
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
REFRESH_SECONDS = 2


def who_of(request: Request, actor: Actor) -> Who:
    admin = actor.admin
    return Who(actor=admin.email if admin else actor.label, admin_id=admin.admin_id if admin else None, ip=request.client.host if request.client else "")


def run_bulk(
    site: Site, request: Request, actor: Actor, chosen: SubscriberFilter, action: str, value: str, *, client_key: str = ""
) -> BulkResult | tuple[BulkJob, bool]:
    """The action inline when the filter matches few enough subscribers, else its job (started, or
    the one this same request started before). Either way one audit entry, in the same transaction.
    DirectoryError for a refused action, value or key."""
    who = who_of(request, actor)
    with site.sessions.begin() as session:
        try:
            with session.begin_nested():
                result = bulk_action(session, chosen, action, value=value, actor=actor.label, now=site.now(), limit=site.settings.bulk_inline_limit)
        except TooManyForInline:
            started = start_bulk_job(
                session, chosen, action, value=value, actor=actor.label, admin_id=who.admin_id, now=site.now(), client_key=client_key
            )
            job = started.job
            if started.created:
                record(
                    session, who, "subscribers.bulk_job", now=site.wall_now(), target=f"bulk_job={job.id}",
                    bulk_action=action, value=job.value, filter=job.filter_query, matched=job.total,
                )  # fmt: skip
            session.expunge(job)
            return job, started.created
        record(
            session, who, "subscribers.bulk", now=site.wall_now(), bulk_action=action, value=value,
            filter=chosen.query_string(), matched=result.matched, changed=result.changed,
        )  # fmt: skip
        return result


@router.get("/admin/bulk-jobs/{job_id}", response_class=HTMLResponse)
def bulk_job_page(job_id: JobId, request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    with site.sessions.begin() as session:
        job = session.get(BulkJob, job_id)
        if job is None:
            raise AdminPageError(404, "No such bulk job", f"There is no bulk job with id {job_id}.")
        session.expunge(job)
    running = job.state in (BulkJobState.QUEUED, BulkJobState.RUNNING)
    # ?follow=0: the same page, not updating itself (WCAG 2.2.2: updates the reader can stop).
    follow = request.query_params.get("follow", "") != "0"
    return admin_page(
        site, request, "bulk_job.html", actor=actor, job=job, running=running, percent=percent(job),
        refresh=REFRESH_SECONDS if follow else 0, filter_query=job.filter_query,
    )  # fmt: skip


# --- the API ---------------------------------------------------------------------------------------


class BulkIn(BaseModel):
    action: str = Field(description="tag-add, tag-remove, enrol or unsubscribe", max_length=20)
    value: str = Field("", description="the tag, the course's slug, or the unsubscribe's reason", max_length=500)
    key: str = Field("", description="your idempotency key: the same key again returns the same job (default: "
                     "the same action, value and filter by the same token on the same day)", max_length=100)  # fmt: skip
    q: str = Field("", max_length=200)
    status: str = Field("", max_length=20)
    tag: str = Field("", max_length=64)
    course: str = Field("", max_length=100, description="filter: enrolled in this course (slug)")
    lesson: int | None = Field(None, ge=1, le=10_000)
    signed_up_from: date | None = Field(None, alias="from")
    signed_up_to: date | None = Field(None, alias="to")
    timezone: str = Field("", max_length=64)
    language: str = Field("", max_length=8)


class BulkDoneOut(BaseModel):
    action: str
    matched: int
    changed: int = Field(description="how many the action changed (the others had it already)")


class BulkJobOut(BaseModel):
    id: int
    url: str = Field(description="this job in the API")
    page: str = Field(description="this job's page in the admin")
    action: str
    value: str
    filter: str = Field(description="the filter, as the query of /api/admin/subscribers")
    state: str = Field(description="queued, running, done or failed")
    total: int = Field(description="subscribers the filter matched when the job started")
    done: int = Field(description="subscribers gone through so far")
    changed: int = Field(description="of which the action changed")
    percent: int
    error: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def _job_out(job: BulkJob) -> BulkJobOut:
    return BulkJobOut(
        id=job.id, url=f"/api/admin/bulk-jobs/{job.id}", page=f"/admin/bulk-jobs/{job.id}", action=job.action, value=job.value,
        filter=job.filter_query, state=job.state, total=job.total, done=job.done, changed=job.changed, percent=percent(job),
        error=job.error, created_by=job.created_by, created_at=job.created_at, updated_at=job.updated_at, finished_at=job.finished_at,
    )  # fmt: skip


@api.post(
    "/subscribers/bulk", response_model=BulkDoneOut,
    responses={
        202: {"model": BulkJobOut, "description": "more subscribers than a request takes: a job, follow it at `url`"},
        400: {"model": ErrorOut, "description": "a filter value, action or value refused: `fields` says which"},
    },
)  # fmt: skip
def api_bulk(body: BulkIn, request: Request, site: SiteDep, actor: EditorToken) -> BulkDoneOut | JSONResponse:
    """One action on every subscriber the filter matches: done in the request up to the inline
    limit (200), else queued as a job the worker runs in batches (202, `Location` the job)."""
    params = {
        "q": body.q, "status": body.status, "tag": body.tag, "course": body.course, "lesson": str(body.lesson or ""),
        "from": body.signed_up_from.isoformat() if body.signed_up_from else "",
        "to": body.signed_up_to.isoformat() if body.signed_up_to else "", "timezone": body.timezone,
        "language": body.language,
    }  # fmt: skip
    try:
        chosen = parse_filter(params)
        outcome = run_bulk(site, request, actor, chosen, body.action, body.value, client_key=body.key)
    except DirectoryError as exc:
        return JSONResponse({"detail": str(exc), "fields": exc.fields}, status_code=400)
    if isinstance(outcome, BulkResult):
        return BulkDoneOut(action=outcome.action, matched=outcome.matched, changed=outcome.changed)
    job, _ = outcome
    out = _job_out(job)
    return JSONResponse(out.model_dump(mode="json"), status_code=202, headers={"Location": out.url})


@api.get("/bulk-jobs/{job_id}", response_model=BulkJobOut, responses={404: {"model": ErrorOut, "description": "no such bulk job"}})
def api_bulk_job(job_id: JobId, site: SiteDep, actor: ViewerToken) -> BulkJobOut:
    """A bulk job and its progress."""
    with site.sessions.begin() as session:
        job = session.get(BulkJob, job_id)
        if job is None:
            raise HTTPException(404, f"no bulk job with id {job_id}")
        return _job_out(job)

