"""How the web app is served: uvicorn with httptools and uvloop (uvicorn[standard]), in factory
mode, with the options that keep it safe on the open internet.

- The HTTP stack is named, not left to "auto": the plain uvicorn install runs h11 on asyncio's
  loop, where every keep-alive response waited about 40 ms on a delayed ACK; with httptools and
  uvloop named, a missing extra fails at start instead of silently bringing that floor back.
  `course web`, `course run` and the web benchmark all serve through these options, so the
  benchmark measures exactly what production runs.
- No `server` banner (nothing to fingerprint) and no proxy-header handling in uvicorn: forwarded
  headers are the app's business and believed only from COURSE_TRUSTED_PROXIES (web/app.py).
- Read time-outs: a client must finish sending a request's head within header_timeout_seconds of
  its first byte, and its body within body_timeout_seconds after the head, or the connection is
  closed. uvicorn itself only times out idle keep-alive connections, so a client sending one byte a
  second could hold a connection (and a worker's file descriptor) for ever.
- Tokens masked in the access log (course/web/access_log.py, installed by the app): signed links
  sit in URL paths, and a log line must not be a working unsubscribe or preferences link for whoever
  reads the logs."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from course.settings import Settings, get_settings

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


# The longest request head accepted (request line and headers).
MAX_HEAD_BYTES = 16 * 1024


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into an HttpParserError, and uvicorn then
    answers 400 and closes the connection."""


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the one `course web`, `course run` and the benchmark serve
    through; nothing serves h11) with deadlines on reading each request, and a limit on its head's size.

    1. When the connection opens, and when the first byte of a new request arrives (the parser's
       on_message_begin), a head timer starts (header_timeout).
    2. When the head is complete a body timer starts (body_timeout); it stops when the message is
       complete, which for a request without a body is at once.
    3. A timer that fires closes the connection; before any response has started, with a 408.
    Idle time between requests stays uvicorn's keep-alive time-out."""

    header_timeout: float | None = None
    body_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_timeout = self.header_timeout or settings.header_timeout_seconds
        self._body_timeout = self.body_timeout or settings.body_timeout_seconds
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: str | None = None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm("head")

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._arm("body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge(f"request head over {MAX_HEAD_BYTES} bytes")

    def _arm(self, what: str) -> None:
        if self._reading == what:
            return  # a deadline runs from the start of what it times, not from the latest byte
        self._disarm()
        timeout = self._header_timeout if what == "head" else self._body_timeout
        self._reading = what
        self._read_timer = self.loop.call_later(timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = None
        self._reading = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.logger.info("closed a connection from %s: request %s not received in time", self.client, self._reading)
        self._reading = None
        self.transport.close()


APP_FACTORY = "course.web.server:served_app"


def served_app() -> Any:
    """create_app() for a serving process (`course web`, `course run`, the benchmarks), with the
    objects of its start-up frozen out of the garbage collector's reach: a full collection over
    them (about 126,000 objects: the imports, the templates, the zone data) takes ~65 ms, a pause
    that lands on whichever requests are in flight (docs/performance.md: p99 at 64 connections
    60 against 74 ms for the course page, 231 against 309 ms for preferences, medians of three).
    Only the serving process does this: a test process builds many apps, and frozen objects are
    never freed."""
    import gc

    from course.web.app import create_app

    app = create_app()
    gc.freeze()
    return app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config, the same for `course web`, `course run`
    and `course bench --scenario web`: httptools on uvloop with the read deadlines above."""
    return {
        "http": TimedHttpToolsProtocol,
        "loop": "uvloop",
        "server_header": False,
        "proxy_headers": False,  # the app reads forwarded headers from settings.trusted_proxies only
        "timeout_keep_alive": 5,
    }


def serve(
    *,
    host: str,
    port: int,
    workers: int = 1,
    access_log: bool = False,
    factory: str = APP_FACTORY,
    settings: Settings | None = None,
) -> None:
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="warning" if not access_log else "info",
        **uvicorn_options(settings or get_settings()),
    )


def bare_app() -> Any:
    """A Starlette app with one route ("hi") and no middleware: the ceiling `course bench --scenario
    web` serves through `serve` next to the real app, so every figure has this server's own limit
    on this machine beside it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hi(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    return Starlette(routes=[Route("/", hi)])
