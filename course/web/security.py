"""Request hygiene for every route, in one place: body size limit, security headers, CSRF tokens.

CSRF uses a signed double-submit cookie: the page sets a random cookie and puts an HMAC of it
(keyed with the settings' secret) in each form; a POST is accepted only when the two match. Another
site can make a browser post, but cannot read our cookie, so it cannot produce the matching field.
Two routes are exempt on purpose, each said where it is defined: the RFC 8058 one-click unsubscribe
(mail providers post it with no cookie) and the signup endpoint that forms on publishers' sites
post to (no cookie can be there; double opt-in makes a forged signup cost one rate-limited mail)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "csrf"
CSRF_FIELD = "csrf_token"

# No inline script anywhere (the time zone is filled by /static/site.js); styles from our file.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def embed_csp(frame_ancestors: str) -> str:
    """The embeddable form may be framed by the sites listed in settings.embed_frame_ancestors."""
    return PAGE_CSP.replace("frame-ancestors 'none'", f"frame-ancestors {frame_ancestors}")


# "View in browser" shows the email itself: its CSS is inlined into style attributes, its images
# are remote. Still no script, no forms, no framing.
EMAIL_VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    # Signed tokens travel in URL paths: never hand them to another site in a Referer.
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class SecurityHeaders:
    """Adds the security headers to every response. A route that needs another CSP (the embed
    form, the email view) sets its own, which is kept; X-Frame-Options follows the CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ApiCors:
    """CORS for the JSON API only (/api/...), for the origins the publisher lists. The pages never
    answer cross-origin reads: they carry CSRF tokens and personal details. No credentials either:
    the API needs no cookie, and its answer is the same whether or not an address is subscribed."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["content-type"], max_age=600
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413 before any route parses them: by the
    declared Content-Length when there is one, else by counting while buffering (the body is at
    most max_bytes, so buffering it costs little) and replaying it to the app."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(scope, send)
            return
        buffered: list[Message] = []
        total = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await self._reject(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        limit_kb = self.max_bytes // 1024
        if scope.get("path", "").startswith("/api/"):
            body = f'{{"detail":"request body larger than {limit_kb} KB"}}'.encode()
            content_type = b"application/json"
        else:
            body = (
                "<!doctype html><meta charset=utf-8><title>Too large</title>"
                f"<p>That request was larger than {limit_kb} KB, more than any form here sends.</p>"
            ).encode()
            content_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def csrf_field_for(secret: str, cookie_value: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{cookie_value}".encode(), hashlib.sha256).hexdigest()


class CsrfTokens:
    """The CSRF pair for one request: the cookie it came with (or a new one) and the form field.
    `issued` says whether the response must set the cookie."""

    def __init__(self, secret: str, request: Request) -> None:
        self.secret = secret
        existing = request.cookies.get(CSRF_COOKIE, "")
        self.cookie_value = existing if _looks_like_token(existing) else secrets.token_urlsafe(32)
        self.is_new = self.cookie_value != existing
        self.used = False

    def field(self) -> str:
        self.used = True
        return csrf_field_for(self.secret, self.cookie_value)


def _looks_like_token(value: str) -> bool:
    return 32 <= len(value) <= 64 and all(ch.isalnum() or ch in "-_" for ch in value)


def csrf_is_valid(secret: str, request: Request, submitted: str) -> bool:
    cookie_value = request.cookies.get(CSRF_COOKIE, "")
    if not _looks_like_token(cookie_value) or not submitted:
        return False
    return hmac.compare_digest(csrf_field_for(secret, cookie_value), submitted)
