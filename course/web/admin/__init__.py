"""The web admin (/admin/…) and the admin JSON API (/api/admin/…). `install` adds both to the app,
with the admin's own answers for "sign in first", "change your password first" and refusals."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from course.web.admin import (
    accounts, api, api_courses, api_subscribers, audit, bulk_jobs, campaigns, course_new, courses, dashboard, editor, gdpr, imports,
    invitations, login, once, subscribers,
)  # fmt: skip
from course.web.admin.auth import PASSWORD_PATH, AdminPageError, PasswordChangeRequired, SignInRequired, login_url
from course.web.admin.times import install_filter
from course.web.admin.views import error_page, see_other


def install(app: FastAPI) -> None:
    install_filter(app.state.site.environment)
    # editor before campaigns: /admin/campaigns/new must not reach /admin/campaigns/{campaign_id};
    # course_new before courses likewise.
    for module in (login, invitations, editor, campaigns, course_new, courses, accounts, once, api):
        app.include_router(module.router)
    # Readers' data (issue #25 B). Before any /api/admin/subscribers/{id} route: "export" is no id.
    for readers_data in (imports.router, imports.api, gdpr.router, gdpr.api, audit.router, audit.api):
        app.include_router(readers_data)
    app.include_router(bulk_jobs.router)
    app.include_router(bulk_jobs.api)  # before /api/admin/subscribers/{id}: "bulk" is no id
    app.include_router(subscribers.router)
    app.include_router(api_subscribers.router)
    for router in (api_courses.router, dashboard.router, dashboard.api_router):  # issue #26
        app.include_router(router)

    _document_refused_input_as_400(app)

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return see_other(login_url(exc.next_path, exc.notice))

    @app.exception_handler(PasswordChangeRequired)
    async def password_first(request: Request, exc: PasswordChangeRequired) -> Response:
        return see_other(PASSWORD_PATH)

    @app.exception_handler(AdminPageError)
    async def admin_refusal(request: Request, exc: AdminPageError) -> Response:
        return error_page(request.app.state.site, request, exc)


def _document_refused_input_as_400(app: FastAPI) -> None:
    """The admin API answers input its schema refuses with 400 and a message per field
    (api.refused_input), documented on every operation: drop FastAPI's own 422 from its description."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        described = app.openapi_schema is not None
        schema = build()
        if not described:
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/api/admin/"):
                    for operation in operations.values():
                        operation.get("responses", {}).pop("422", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
