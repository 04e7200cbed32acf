"""The web admin (/admin/…) and the admin JSON API (/api/admin/…). `install` adds both to the app,
with the admin's own answers for "sign in first", "change your password first" and refusals."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from course.web.admin import accounts, api, campaigns, courses, editor, login
from course.web.admin.auth import PASSWORD_PATH, AdminPageError, PasswordChangeRequired, SignInRequired, login_url
from course.web.admin.views import error_page, see_other


def install(app: FastAPI) -> None:
    # editor before campaigns: /admin/campaigns/new must not reach /admin/campaigns/{campaign_id}.
    for module in (login, editor, campaigns, courses, accounts, api):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return see_other(login_url(exc.next_path))

    @app.exception_handler(PasswordChangeRequired)
    async def password_first(request: Request, exc: PasswordChangeRequired) -> Response:
        return see_other(PASSWORD_PATH)

    @app.exception_handler(AdminPageError)
    async def admin_refusal(request: Request, exc: AdminPageError) -> Response:
        return error_page(request.app.state.site, request, exc)
