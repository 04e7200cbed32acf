"""The web app factory: `course web` serves create_app() with uvicorn (factory mode); tests call it
with their own settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.middleware.gzip import GZipMiddleware
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from course.db import session_factory
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer, template_environment
from course.i18n import N_
from course.settings import InsecureConfiguration, Settings, get_settings, refuse_unsafe
from course.web import ops
from course.web import admin
from course.web.admin.auth import AdminPageError
from course.web.admin.views import error_page as admin_error_page
from course.web.public import api, confirm, courses, erase, preferences, unsubscribe, view, webhooks
from course.web.cache import CatalogueCache
from course.web.security import ApiCors, ASGIApp, BodySizeLimit, RefuseControlCharacters, SameSiteAdminPosts, Scope, SecurityHeaders, json_safe
from course.web.access_log import install_access_log_masking
from course.web.site import PageError, Site
from course.web.static_assets import StaticAssets

STATIC_DIR = Path(__file__).parent / "static"

_STATUS_TITLES = {
    404: (N_("Page not found"), N_("There is nothing at this address. Check the link, or start from the list of courses.")),
    405: (N_("Not allowed"), N_("This page cannot be used that way.")),
}


__all__ = ["InsecureConfiguration", "create_app"]


class _WebApp(FastAPI):
    """Starlette puts its ServerErrorMiddleware, which answers an unhandled error with a 500, outside
    every middleware added with add_middleware. The security headers go outside it instead, so that
    answer carries them too; forwarded headers are read outermost, from trusted proxies only."""

    hsts = False
    trusted_proxies: list[str] = []

    def build_middleware_stack(self) -> ASGIApp:
        stack: ASGIApp = SecurityHeaders(super().build_middleware_stack(), hsts=self.hsts)
        if self.trusted_proxies:
            # X-Forwarded-For is believed only when the connection comes from a listed proxy, and
            # then only its entries up to the first untrusted hop (uvicorn's middleware).
            stack = ProxyHeadersMiddleware(stack, trusted_hosts=self.trusted_proxies)  # type: ignore[arg-type]
        return stack


class PublicGZip(GZipMiddleware):
    """GZip for everything but the admin pages. Compressing a page that holds a secret (the admin
    pages carry session-bound CSRF tokens and a signed-in editor's data) next to text an attacker
    can choose is what BREACH reads the secret through, one guessed byte at a time from the
    compressed length; the admin is a few people on fast links, where compression buys nothing."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/admin", "/api/admin")):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # In production: a weak secret, an http base URL, localhost mail domains (settings.production_problems).
    refuse_unsafe(settings)
    sessions = session_factory(settings)
    assets = StaticAssets(STATIC_DIR)
    environment = template_environment(settings.templates_dir, auto_reload=settings.template_reload)
    environment.globals["static_url"] = assets.url
    site = Site(
        settings=settings,
        sessions=sessions,
        signer=signer_from_settings(settings),
        renderer=Renderer(settings.templates_dir, auto_reload=settings.template_reload),
        environment=environment,
        catalogue=CatalogueCache(sessions, recheck_seconds=settings.catalogue_recheck_seconds),
    )
    # The interactive docs pages load script from a CDN, which our CSP forbids; the schema is enough.
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool, 40 threads by default, each holding a pooled
        # database connection (10 a process) while it runs: past 10 the extra threads only wait
        # for the pool, unfairly, and compete for the GIL. A limit under the pool's size keeps the
        # queue in the event loop, first come first served, with room for a cache miss's own
        # connection.
        to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        yield

    app = _WebApp(
        lifespan=lifespan,
        title="Email course signup API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.site = site
    app.hsts = settings.env == "production"
    app.trusted_proxies = settings.trusted_proxy_list
    install_access_log_masking()
    # The router tries its routes in this order, and each route FastAPI includes costs a few
    # microseconds to try (about 1 µs for the match, more for the bookkeeping around it; the admin
    # alone has over fifty): the static files first, then the public pages by how often they are
    # asked for, the admin last. Static files behind every route cost 120 µs a request in routing.
    app.mount("/static", assets, name="static")
    for pages in (courses, unsubscribe, preferences, erase, api, view, confirm, webhooks, ops):
        app.include_router(pages.router)
    # The SNS certificate fetcher of the SES webhook; None: AWS's, over https (tests put their own).
    app.state.sns_certificates = None
    admin.install(app)

    def refuse_control_characters(scope: Scope, reason: str) -> ASGIApp:
        request = Request(scope)
        if _is_api(request):
            return JSONResponse({"detail": reason}, status_code=400)
        return site.error_page(
            request, PageError(400, N_("Something is not right"), N_("That address or form had characters no link or form of ours sends."))
        )

    def refuse_cross_site(scope: Scope) -> ASGIApp:
        refusal = AdminPageError(
            403, "Sent from another site",
            "That form was sent from another site, so nothing was done. Open the admin at its own address and try again.",
        )  # fmt: skip
        return admin_error_page(site, Request(scope), refusal)

    from course.web.admin.audit import AuditAdminActions

    app.add_middleware(AuditAdminActions, site=site)  # innermost: it sees the route that answered
    # Before any route or session is read: an admin POST that the browser says another site made.
    app.add_middleware(SameSiteAdminPosts, base_url=settings.base_url, refusal=refuse_cross_site)
    # Inner first: the body is bounded (BodySizeLimit) before it is searched for control characters.
    from course.web.admin.imports import UPLOAD_PATHS

    # Webhook bodies are the providers' signed data, normalised field by field (course/bounces/webhooks):
    # a provider's diagnostic with a control character in it must not be refused and retried forever.
    app.add_middleware(
        RefuseControlCharacters, refusal=refuse_control_characters, unbuffered=frozenset(UPLOAD_PATHS) | webhooks.PATHS
    )
    admin_limit = max(settings.max_admin_request_bytes, settings.max_request_bytes)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_request_bytes, larger_under={"/admin/": admin_limit, "/api/admin/": admin_limit, "/webhooks/": settings.webhook_max_bytes},
        streamed={path: settings.import_max_bytes for path in UPLOAD_PATHS},
    )  # fmt: skip
    if settings.api_cors_origin_list:
        app.add_middleware(ApiCors, origins=settings.api_cors_origin_list)
    # Pages are 5 to 40 KB of HTML (the time zone list) and shrink about sixfold; level 6 costs a
    # fraction of level 9's time for nearly its size. Small API answers are sent as they are, and
    # static files come gzipped already (StaticAssets), which the middleware leaves alone.
    app.add_middleware(PublicGZip, minimum_size=1024, compresslevel=6)
    # SecurityHeaders wraps everything, 413s, static files and 500s included: see _WebApp.

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return site.error_page(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["allow"] = _allowed_methods(app, request.scope)
        if _is_api(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        title, message = _STATUS_TITLES.get(exc.status_code, (N_("Something is not right"), str(exc.detail)))
        response = site.error_page(request, PageError(exc.status_code, title, message))
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The error itself is raised on to the server, which logs it; the visitor gets a page
        # that says nothing of the cause (no trace, no SQL).
        if _is_api(request):
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return site.error_page(
            request,
            PageError(500, N_("Something went wrong on our side"), N_("Nothing you did caused it. Please try again in a few minutes.")),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/admin/"):
            return admin.api.refused_input(exc)  # 400 with a message per field (README)
        if _is_api(request):
            # FastAPI's answer echoes each field's input; json_safe makes whatever that was (a
            # NaN, bytes) plain JSON, which the stock handler could not serialise (a 500).
            return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)
        return site.error_page(
            request, PageError(400, N_("Something is not right"), N_("That request was not one our pages send. Go back and try again."))
        )

    return app


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route at this path answers (Starlette names only the first route's):
    asked of the router one method at a time, so included routers answer for their routes."""
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]
    return ", ".join(allowed)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/webhooks/"))
