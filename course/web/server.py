"""How the web app is served: uvicorn with the options that keep it safe on the open internet.

- No `server` banner (nothing to fingerprint) and no proxy-header handling in uvicorn: forwarded
  headers are the app's business and believed only from COURSE_TRUSTED_PROXIES (web/app.py).
- Read time-outs: a client must finish sending a request's head within header_timeout_seconds of
  its first byte, and its body within body_timeout_seconds after the head, or the connection is
  closed. uvicorn itself only times out idle keep-alive connections, so a client sending one byte a
  second could hold a connection (and a worker's file descriptor) for ever.
- Tokens masked in the access log: signed links sit in URL paths, and a log line must not be a
  working unsubscribe or preferences link for whoever reads the logs."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from course.settings import Settings, get_settings

# The paths whose last segment is a signed token (course.delivery.links.PATHS).
_TOKEN_PATH = re.compile(r"^(/(?:u|preferences|view|confirm)/)([^/?#]{6})[^/?#]*")


def mask_tokens(path: str) -> str:
    """'/u/WzEsMl0.aBc.XyZ' -> '/u/WzEsMl…': enough to tell two requests apart, not to use one."""
    return _TOKEN_PATH.sub(r"\1\2…", path)


class MaskTokens(logging.Filter):
    """On uvicorn's access logger: its records carry the path as their third argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], mask_tokens(args[2]), *args[3:])
        return True


def install_access_log_masking() -> None:
    access_logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, MaskTokens) for existing in access_logger.filters):
        access_logger.addFilter(MaskTokens())


_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's head and body.

    1. When the connection opens, and whenever the first bytes of a new request head arrive, a
       head timer starts (header_timeout). It stops once h11 has parsed the whole head.
    2. When the head is complete and a body follows, a body timer starts (body_timeout). It stops
       once the body is complete.
    3. A timer that fires closes the connection; before any response has started, with a 408.
    Idle time between requests stays uvicorn's keep-alive time-out."""

    # Read from the settings when None; a test sets short ones on a subclass.
    header_timeout: float | None = None
    body_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_timeout = self.header_timeout or settings.header_timeout_seconds
        self._body_timeout = self.body_timeout or settings.body_timeout_seconds
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: str | None = None  # "head" or "body": what the armed timer is for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests uvicorn's keep-alive timer runs until a byte arrives; from then
            # (a head has begun: the keep-alive timer is gone) the head must come in time.
            if self.timeout_keep_alive_task is None and (self.conn.trailing_data[0] or self._reading == "head"):
                self._arm("head")
            elif self.timeout_keep_alive_task is not None:
                self._disarm()
        elif state is h11.SEND_BODY:
            self._arm("body")
        else:
            self._disarm()

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
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.logger.info("closed a connection from %s: request %s not received in time", self.client, self._reading)
        self._reading = None
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config, the same for `course web` and `course run`."""
    return {
        "http": TimedH11Protocol,
        "server_header": False,
        "proxy_headers": False,  # the app reads forwarded headers from settings.trusted_proxies only
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,  # the longest request head accepted
    }
