"""Request hygiene for every route, in one place: body size limit, control characters, strict JSON,
security headers, CSRF tokens, same-site admin posts.

CSRF uses a signed double-submit cookie: the page sets a cookie the server minted (a random nonce
and its HMAC, so a cookie an attacker planted through a sibling subdomain or a cookie-injection bug
is never adopted) and puts an HMAC of it (keyed with the settings' secret) in each form; a POST is
accepted only when the two match. Another site can make a browser post, but cannot read our
cookie, so it cannot produce the matching field. A minted cookie can still be planted next to a
victim's (one the attacker's own visit got), so the admin binds its field to the admin's session
instead (course.web.admin.auth.admin_csrf), and refuses posts the browser says another site made
(SameSiteAdminPosts).
Two routes are exempt on purpose, each said where it is defined: the RFC 8058 one-click unsubscribe
(mail providers post it with no cookie) and the signup endpoint that forms on publishers' sites
post to (no cookie can be there; double opt-in makes a forged signup cost one rate-limited mail)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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


# Production only (it is served over https there): browsers refuse plain http for a year.
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """Adds the security headers to every response. A route that needs another CSP (the embed
    form, the email view) sets its own, which is kept; X-Frame-Options follows the CSP."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

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
                if self.hsts:
                    headers.append((b"strict-transport-security", HSTS.encode()))
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
    most max_bytes, so buffering it costs little) and replaying it to the app. `larger_under` maps
    path prefixes to a limit of their own (the admin, whose campaign bodies are long). `streamed`
    maps exact paths (file uploads) to a limit checked against the declared Content-Length only:
    their bodies go to the route unbuffered, and the route refuses one without a length (411)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger_under: dict[str, int] | None = None, streamed: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger_under = larger_under or {}
        self.streamed = streamed or {}

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.larger_under.items() if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if scope.get("path", "") in self.streamed:
            upload_limit = self.streamed[scope["path"]]
            if declared is not None and (not declared.isdigit() or int(declared) > upload_limit):
                await self._reject(scope, send, upload_limit)
            else:
                await self.app(scope, receive, send)
            return
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._reject(scope, send, max_bytes)
            return
        buffered: list[Message] = []
        total = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            total += len(message.get("body", b""))
            if total > max_bytes:
                await self._reject(scope, send, max_bytes)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send, max_bytes: int) -> None:
        limit_kb = max_bytes // 1024
        if scope.get("path", "").startswith(("/api/", "/webhooks/")):
            body = f'{{"detail":"request body larger than {limit_kb:,} KB"}}'.encode()
            content_type = b"application/json"
        else:
            body = (
                "<!doctype html><meta charset=utf-8><title>Too large</title>"
                f"<p>That request was larger than {limit_kb:,} KB, more than this form takes.</p>"
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


# Tab, line feed and carriage return are allowed in body fields (a pasted value may carry them and
# every consumer treats them as white space); nothing else of Unicode's control category anywhere.
_BODY_WHITESPACE = frozenset("\t\n\r")


def control_character_in(text: str, *, allowed: frozenset[str] = frozenset()) -> bool:
    """NUL, the other C0 controls, DEL and the C1 controls: never part of a slug, an address, a
    name or a token; a NUL in particular is refused by PostgreSQL itself (a 500 if it got there)."""
    return any(unicodedata.category(char) == "Cc" and char not in allowed for char in text)


# How deep a JSON body may nest. Our deepest (a campaign's audience) is three levels; Python's json
# and anything that walks the document recurses, so 1,000 levels was a RecursionError (a 500).
MAX_JSON_DEPTH = 32
# The integers a field of ours can hold: the database's BIGINT.
_JSON_INT_LIMIT = 2**63 - 1
# A JSON string (possessive, so an unclosed one costs one pass) and the brackets outside strings.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


class RefusedJson(ValueError):
    """A JSON body no route may see (numbers JSON cannot carry, nesting too deep); the message is
    fit to show the client."""


def _refuse_constant(name: str) -> Any:
    raise RefusedJson(f"{name} is not a JSON number: send numbers as finite decimals")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise RefusedJson(f"the number {text[:40]} is out of range")
    return number


def _bounded_int(text: str) -> int:
    # Over 4,300 digits int() raises ValueError itself, which json reports as no JSON at all.
    number = int(text)
    if abs(number) > _JSON_INT_LIMIT:
        raise RefusedJson(f"the number {text[:40]} is out of range (at most 19 digits)")
    return number


def json_nesting(body: bytes) -> int:
    """How deep the brackets outside strings nest (a pass over the text: no recursion)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def strict_json(body: bytes) -> Any:
    """The document in a JSON body, read strictly:

    1. nesting deeper than MAX_JSON_DEPTH is refused before the parser (which recurses) sees it;
    2. NaN, Infinity and numbers that overflow a float (1e99999) or a BIGINT are refused: none is
       JSON (RFC 8259), and an error answer that echoes one cannot be serialised;
    3. text that is no JSON at all raises ValueError (json's own, or UnicodeDecodeError).
    Raises RefusedJson for 1 and 2."""
    if json_nesting(body) > MAX_JSON_DEPTH:
        raise RefusedJson(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)


def json_safe(value: Any, *, depth: int = MAX_JSON_DEPTH + 8) -> Any:
    """`value` with everything strict JSON cannot carry made text (NaN, infinities, bytes and other
    objects), for an error answer that echoes what was sent; nesting past `depth` is cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth <= 0:
        return "…"
    if isinstance(value, dict):
        return {str(key): json_safe(item, depth=depth - 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth=depth - 1) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _json_strings(value: Any) -> Iterator[str]:
    """Every key and string in a document (iterative: a document is at most MAX_JSON_DEPTH deep,
    but nothing here needs the call stack for it)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield key
                pending.append(child)
        elif isinstance(item, list):
            pending.extend(item)


def body_problem(content_type: str, body: bytes) -> str | None:
    """What is wrong with a form or JSON body before any route reads it, in words for the client,
    or None: a control character in any field name or value (decoded: %00 in a form and \\u0000
    in JSON count), or JSON strict_json refuses. Text that is no JSON at all, and other bodies,
    are left to the route (a 422 says what it expected)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", errors="replace")
        fields = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")
        if any(control_character_in(part, allowed=_BODY_WHITESPACE) for field in fields for part in field):
            return CONTROL_CHARACTERS_REFUSED
        return None
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            document = strict_json(body)
        except RefusedJson as exc:
            return str(exc)
        except ValueError:
            return None  # not JSON at all: the route's own validation answers 422
        if any(control_character_in(text, allowed=_BODY_WHITESPACE) for text in _json_strings(document)):
            return CONTROL_CHARACTERS_REFUSED
    return None


CONTROL_CHARACTERS_REFUSED = "control characters are not allowed in a request"


class RefuseControlCharacters:
    """Answers 400 to a request with a control character in its path, its query string or any
    form or JSON field, or with JSON that strict_json refuses, before any route (or the database)
    sees it. Sits inside BodySizeLimit, so the body it reads is already bounded; it buffers that
    body and replays it to the app. `refusal(scope, reason)` builds the answer (the app's error
    page, or JSON under /api with `reason` as its detail)."""

    def __init__(self, app: ASGIApp, *, refusal: Callable[[Scope, str], ASGIApp], unbuffered: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.refusal = refusal
        # Upload paths: a file is data, NUL bytes and all (each row is checked on its own).
        self.unbuffered = unbuffered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        query_fields = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")
        if control_character_in(scope["path"]) or any(control_character_in(part) for field in query_fields for part in field):
            await self.refusal(scope, CONTROL_CHARACTERS_REFUSED)(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH") or scope["path"] in self.unbuffered:
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(message.get("body", b"") for message in buffered if message["type"] == "http.request")
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"").decode("latin-1")
        problem = body_problem(content_type, body)
        if problem is not None:
            await self.refusal(scope, problem)(scope, receive, send)
            return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


def csrf_field_for(secret: str, cookie_value: str, purpose: str = "csrf") -> str:
    """The form field that goes with a cookie: an HMAC of it, keyed with the secret, per purpose
    (so the public pages' field is no key to the admin's sign-in form)."""
    return hmac.new(secret.encode(), f"{purpose}:{cookie_value}".encode(), hashlib.sha256).hexdigest()


class CsrfTokens:
    """The CSRF pair for one request and what it checks a post against.

    - Bound to a cookie (the public pages, and the admin's sign-in forms, which have no session
      yet): the cookie `cookie_name` it came with when the server minted it (else a new one, which
      the response sets: `is_new`), and the field, an HMAC of it.
    - Bound to a session (`session_token`, a signed-in admin's): the field is an HMAC over the
      session token's hash and no cookie is involved, so a cookie minted for someone else and
      planted in the browser is worth nothing."""

    def __init__(
        self, secret: str, request: Request, *, cookie_name: str = CSRF_COOKIE, purpose: str = "csrf", session_token: str = ""
    ) -> None:
        self.secret = secret
        self.cookie_name = cookie_name
        self.purpose = purpose
        self.used = False
        if session_token:
            self.purpose = f"{purpose}-session"
            self.cookie_value = hashlib.sha256(session_token.encode()).hexdigest()
            self.is_new = False
            self.bound_to_session = True
            return
        self.bound_to_session = False
        existing = request.cookies.get(cookie_name, "")
        self.cookie_value = existing if minted_here(secret, existing) else mint_csrf_cookie(secret)
        self.is_new = self.cookie_value != existing

    def field(self) -> str:
        self.used = True
        return csrf_field_for(self.secret, self.cookie_value, self.purpose)

    def accepts(self, submitted: str) -> bool:
        """Whether a posted field matches: the request's own session, or a cookie it brought that
        the server minted (a new one means it brought none)."""
        if not submitted or self.is_new:
            return False
        return hmac.compare_digest(csrf_field_for(self.secret, self.cookie_value, self.purpose), submitted)


def _cookie_signature(secret: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"csrf-cookie:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_csrf_cookie(secret: str) -> str:
    """A new cookie value: a random nonce and the server's signature of it."""
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_cookie_signature(secret, nonce)}"


def minted_here(secret: str, cookie_value: str) -> bool:
    nonce, dot, signature = cookie_value.partition(".")
    if not dot or len(cookie_value) > 100 or not nonce:
        return False
    return hmac.compare_digest(_cookie_signature(secret, nonce), signature)


def csrf_is_valid(secret: str, request: Request, submitted: str) -> bool:
    """A public form's field against the request's `csrf` cookie."""
    return CsrfTokens(secret, request).accepts(submitted)


# --- where a post comes from -------------------------------------------------------------------

_SAME_ORIGIN_FETCHES = ("same-origin", "none")  # "none": the person's own action (a bookmark, a reload)


def from_another_site(headers: Mapping[str, str], own_origins: Collection[str]) -> bool:
    """Whether the browser says a request was made by another site.

    1. Sec-Fetch-Site, when the browser sends it (every current one does), decides: anything but
       same-origin (or none, the person's own action) is refused; same-site is a sibling subdomain,
       refused too. Origin is not asked then: under our `Referrer-Policy: no-referrer` a browser
       sends `Origin: null` on its same-origin form posts.
    2. Without it (browsers from before 2020-2023), an Origin that is not ours is refused.
    3. Neither, or `Origin: null` alone: not judged here. Older browsers send no Origin, or null,
       on a same-origin form post, and scripts send neither; the CSRF field, bound to the admin's
       session, decides those."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in _SAME_ORIGIN_FETCHES
    origin = (headers.get("origin") or "null").strip().lower().rstrip("/")
    return origin != "null" and origin not in own_origins


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an absolute URL, as a browser writes it in Origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


class SameSiteAdminPosts:
    """Refuses every POST (and other unsafe method) under /admin that the browser says another site
    made (from_another_site), before any route or session sees it: the second line behind the
    session-bound CSRF field. Ours is the request's own origin (scheme and Host) and `base_url`'s
    (behind a proxy that terminates TLS, the app sees http where the browser saw https).
    `refusal(scope)` builds the answer. The admin API is not covered: a bearer token is no
    cookie, so a browser never sends it for another site."""

    def __init__(self, app: ASGIApp, *, base_url: str, refusal: Callable[[Scope], ASGIApp]) -> None:
        self.app = app
        self.base_origin = origin_of(base_url)
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (path == "/admin" or path.startswith("/admin/")) and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            request = Request(scope)
            own = {self.base_origin, f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
            if from_another_site(request.headers, own):
                await self.refusal(scope)(scope, receive, send)
                return
        await self.app(scope, receive, send)
