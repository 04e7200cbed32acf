"""CSV import and export in the admin and the admin API.

An upload (the admin's form, or the API's raw CSV body) is streamed to a file under
`<var>/imports/`, bounded by COURSE_IMPORT_MAX_BYTES (course.web.security.BodySizeLimit refuses a
larger declared length; the route refuses one without a length), and its import is queued. A
background task after the answer runs it (course.audience.imports.process) and deletes the file;
the import's page follows its progress and offers the per-row report as CSV. Exports stream the
filter's subscribers as CSV in constant memory. Each is recorded in the audit log."""

from __future__ import annotations

import shutil
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from course.accounts.audit_log import Who, record
from course.audience.csv_rows import ImportFileError
from course.audience.export import ExportFilter, ExportFilterError, check_filter, export_csv
from course.audience.imports import MODES, ImportOptions, process, report_csv, report_rows, start_import, summary_line
from course.content.catalogue import list_courses
from course.models import ImportStatus, SubscriberImport, SubscriberImportRow, SubscriberStatus
from course.web.admin.api import TOKEN_ROUTE_RESPONSES
from course.web.admin.auth import Actor, AdminPageError, EditorPage, EditorToken, SiteDep, check_csrf
from course.web.admin.views import admin_page, see_other
from course.web.security import CSRF_FIELD
from course.web.site import Site

UPLOAD_PAGE = "/admin/imports"
UPLOAD_API = "/api/admin/subscribers/import"
UPLOAD_PATHS = (UPLOAD_PAGE, UPLOAD_API)
RECENT_IMPORTS = 20
REPORT_PREVIEW_ROWS = 50

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/admin", tags=["admin"], responses=TOKEN_ROUTE_RESPONSES)
ImportId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def who(request: Request, actor: Actor) -> Who:
    """The audit log's "who" of an admin request: the admin (or the token) and the client's address."""
    admin = actor.admin
    return Who(actor=admin.email if admin else actor.label, admin_id=admin.admin_id if admin else None, ip=request.client.host if request.client else "")


def _upload_folder(site: Site) -> FilePath:
    folder = site.settings.var_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _declared_length(request: Request) -> int:
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise HTTPException(411, "send the file with a Content-Length")
    return int(declared)


def _queue(site: Site, request: Request, actor: Actor, *, filename: str, options: ImportOptions, source: str) -> int:
    with site.sessions.begin() as session:
        imported = start_import(
            session, filename=filename, options=options, source=source, actor=who(request, actor).actor,
            admin_id=who(request, actor).admin_id, now=site.wall_now(),
        )  # fmt: skip
        record(session, who(request, actor), "import.start", now=site.wall_now(), target=f"import {imported.id}", file=filename[:255], mode=options.mode)
        return imported.id


def _run(site: Site, import_id: int, path: FilePath, options: ImportOptions) -> None:
    """The background task: the import, then the uploaded file is deleted (it holds personal data)."""
    try:
        done = process(site.sessions, import_id, path, options=options, secret=site.settings.secret_key, now=site.now())
        with site.sessions.begin() as session:
            record(session, Who(actor=done.actor, admin_id=done.admin_id), "import.finish", now=site.wall_now(), target=f"import {import_id}", status=done.status, **done.counts)
    finally:
        path.unlink(missing_ok=True)


def _options(form: Any) -> ImportOptions:
    def text(name: str) -> str | None:
        value = form.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None

    return ImportOptions(
        mode=text("mode") or "opt-in", course_slug=text("course"), tag=text("tag"), consent=text("consent"),
        encoding=text("encoding"), delimiter=text("delimiter").replace("\\t", "\t") if text("delimiter") else None,
    )  # fmt: skip


# --- the admin pages ----------------------------------------------------------------------------


def _imports_page(site: Site, request: Request, actor: Actor, *, status: int = 200, error: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
    with site.sessions.begin() as session:
        imports = session.scalars(select(SubscriberImport).order_by(SubscriberImport.id.desc()).limit(RECENT_IMPORTS)).all()
        courses = [listing.course for listing in list_courses(session)]
        return admin_page(
            site, request, "imports.html", actor=actor, status=status, imports=imports, courses=courses, modes=MODES,
            statuses=[state.value for state in SubscriberStatus], error=error, form=form or {"mode": "opt-in"},
            summary_line=summary_line, max_mb=site.settings.import_max_bytes // (1024 * 1024),
        )  # fmt: skip


@router.get(UPLOAD_PAGE, response_class=HTMLResponse)
def imports_page(request: Request, site: SiteDep, actor: EditorPage) -> HTMLResponse:
    return _imports_page(site, request, actor)


@router.post(UPLOAD_PAGE, response_class=HTMLResponse)
async def upload(request: Request, site: SiteDep, actor: EditorPage, background: BackgroundTasks) -> Response:
    _declared_length(request)
    # Starlette spools the file part to disk past 1 MB: the upload never sits whole in memory.
    form = await request.form(max_files=1, max_fields=20)
    check_csrf(site, request, _csrf_value(form))
    upload_file = form.get("file")
    options = _options(form)
    shown = {key: value for key, value in form.items() if isinstance(value, str) and key in ("mode", "course", "tag", "consent")}
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        return await run_in_threadpool(_imports_page, site, request, actor, status=400, error="Choose a CSV file to import.", form=shown)
    try:
        import_id = await run_in_threadpool(_queue, site, request, actor, filename=upload_file.filename, options=options, source="web")
    except ImportFileError as exc:
        return await run_in_threadpool(_imports_page, site, request, actor, status=400, error=str(exc), form=shown)
    path = _upload_folder(site) / f"{import_id}.csv"
    with path.open("wb") as out:
        await run_in_threadpool(shutil.copyfileobj, upload_file.file, out, 1 << 20)
    await upload_file.close()
    background.add_task(_run, site, import_id, path, options)
    return see_other(f"{UPLOAD_PAGE}/{import_id}")


def _csrf_value(form: Any) -> str:
    value = form.get(CSRF_FIELD, "")
    return value if isinstance(value, str) else ""


@router.get(UPLOAD_PAGE + "/{import_id}", response_class=HTMLResponse)
def import_page(import_id: ImportId, request: Request, site: SiteDep, actor: EditorPage) -> HTMLResponse:
    with site.sessions.begin() as session:
        imported = session.get(SubscriberImport, import_id)
        if imported is None:
            raise AdminPageError(404, "No such import", f"There is no import with id {import_id}.")
        problems = session.scalars(
            select(SubscriberImportRow)
            .where(SubscriberImportRow.import_id == import_id, SubscriberImportRow.outcome.in_(["rejected", "suppressed"]))
            .order_by(SubscriberImportRow.line)
            .limit(REPORT_PREVIEW_ROWS)
        ).all()
        running = imported.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)
        # ?follow=0: the same page, not updating itself (WCAG 2.2.2: updates the reader can stop).
        follow = request.query_params.get("follow", "") != "0"
        return admin_page(
            site, request, "import.html", actor=actor, imported=imported, problems=problems, running=running, follow=follow,
            summary=summary_line(imported.counts) if imported.status == ImportStatus.DONE else "",
        )  # fmt: skip


def _report_response(site: Site, import_id: int) -> StreamingResponse:
    with site.sessions.begin() as session:
        imported = session.get(SubscriberImport, import_id)
        if imported is None or imported.status != ImportStatus.DONE:
            raise HTTPException(404, f"import {import_id} has no report (not finished, failed, or no such import)")

    def chunks() -> Any:
        with site.sessions.begin() as session:
            yield from report_csv(report_rows(session, import_id))

    return _csv(chunks(), f"import-{import_id}-report.csv")


def _csv(chunks: Any, filename: str) -> StreamingResponse:
    return StreamingResponse(
        chunks, media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"},
    )  # fmt: skip


@router.get(UPLOAD_PAGE + "/{import_id}/report.csv")
def import_report(import_id: ImportId, site: SiteDep, actor: EditorPage) -> StreamingResponse:
    return _report_response(site, import_id)


def _export_response(site: Site, request: Request, actor: Actor, wanted: ExportFilter) -> StreamingResponse:
    with site.sessions.begin() as session:
        check_filter(session, wanted)
        record(session, who(request, actor), "export", now=site.wall_now(), status=wanted.status or "", tag=wanted.tag or "", course=wanted.course_slug or "")

    def chunks() -> Any:
        with site.sessions.begin() as session:
            yield from export_csv(session, wanted)

    return _csv(chunks(), "subscribers.csv")


@router.get("/admin/subscribers/export.csv")
def export_page(
    request: Request, site: SiteDep, actor: EditorPage, status: str = "", tag: str = "", course: str = ""
) -> StreamingResponse:
    try:
        return _export_response(site, request, actor, ExportFilter(status=status or None, tag=tag or None, course_slug=course or None))
    except ExportFilterError as exc:
        raise AdminPageError(400, "Nothing to export", f"{str(exc).capitalize()}.") from None


# --- the API --------------------------------------------------------------------------------------


class ImportOut(BaseModel):
    id: int
    status: str = Field(description="queued, running, done or failed")
    filename: str
    mode: str
    total_rows: int
    counts: dict[str, int] = Field(description="rows per outcome when done; {'percent': n} while running")
    unknown_columns: list[str]
    error: str | None = Field(description="why a failed import failed (nothing of it was imported)")
    report_url: str


def _import_out(imported: SubscriberImport) -> ImportOut:
    return ImportOut(
        id=imported.id, status=imported.status, filename=imported.filename, mode=imported.mode, total_rows=imported.total_rows,
        counts=imported.counts, unknown_columns=imported.unknown_columns, error=imported.error,
        report_url=f"/api/admin/subscribers/imports/{imported.id}/report",
    )  # fmt: skip


_CSV_BODY = {"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}}}


@api.post(
    "/subscribers/import", status_code=202, response_model=ImportOut, openapi_extra=_CSV_BODY,
    responses={400: {"description": "bad options"}, 411: {"description": "no Content-Length"}},
)  # fmt: skip
async def api_import(
    request: Request,
    site: SiteDep,
    actor: EditorToken,
    background: BackgroundTasks,
    mode: Annotated[str, Query(description="opt-in (a confirmation mail each, needs course) or confirmed (needs consent)")] = "opt-in",
    course: Annotated[str | None, Query(max_length=100)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    consent: Annotated[str | None, Query(max_length=2000, description="how these people agreed to receive mail")] = None,
    encoding: Annotated[str | None, Query(max_length=40)] = None,
    delimiter: Annotated[str | None, Query(max_length=2)] = None,
) -> ImportOut:
    """Import subscribers from the CSV in the body (Content-Type text/csv): queued at once, run
    after the answer; follow it at GET /api/admin/subscribers/imports/{id}."""
    _declared_length(request)
    options = ImportOptions(mode=mode, course_slug=course, tag=tag, consent=consent, encoding=encoding, delimiter=delimiter)
    try:
        import_id = await run_in_threadpool(_queue, site, request, actor, filename="api.csv", options=options, source="api")
    except ImportFileError as exc:
        raise HTTPException(400, str(exc)) from None
    path = _upload_folder(site) / f"{import_id}.csv"
    with path.open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    background.add_task(_run, site, import_id, path, options)
    with site.sessions.begin() as session:
        imported = session.get(SubscriberImport, import_id)
        assert imported is not None
        return _import_out(imported)


@api.get("/subscribers/imports/{import_id}", response_model=ImportOut, responses={404: {"description": "no such import"}})
def api_import_status(import_id: ImportId, site: SiteDep, actor: EditorToken) -> ImportOut:
    with site.sessions.begin() as session:
        imported = session.get(SubscriberImport, import_id)
        if imported is None:
            raise HTTPException(404, f"no import {import_id}")
        return _import_out(imported)


@api.get(
    "/subscribers/imports/{import_id}/report", response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "line, email, outcome, reason"}, 404: {"description": "no report"}},
)  # fmt: skip
def api_import_report(import_id: ImportId, site: SiteDep, actor: EditorToken) -> StreamingResponse:
    return _report_response(site, import_id)


@api.get(
    "/subscribers/export", response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the filter's subscribers"}, 400: {"description": "unknown status or course"}},
)  # fmt: skip
def api_export(
    request: Request,
    site: SiteDep,
    actor: EditorToken,
    status: Annotated[str | None, Query(max_length=20)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    course: Annotated[str | None, Query(max_length=100)] = None,
) -> StreamingResponse:
    """The filter's subscribers as CSV, streamed (formula cells neutralised)."""
    try:
        return _export_response(site, request, actor, ExportFilter(status=status, tag=tag, course_slug=course))
    except ExportFilterError as exc:
        raise HTTPException(400, str(exc)) from None
