"""Fixtures for the subscriber web tests: a migrated database with the sample course imported, a
manual clock, a real SMTP server, and `deliver()`, which runs the real dispatcher and sender in this
process so a test can read the mail the pages caused.

Import the fixtures into a test module with `from tests.support.web_fixtures import *  # noqa: F403`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from course import schema
from course.audience.signup_requests import SignupLimits, handle_signups
from course.clock import ManualClock, set_clock, set_wall_clock
from course.db import get_engine
from course.delivery.dispatch import dispatch_due
from course.audience.course_content import import_content
from course.delivery.links import signer_from_settings
from course.models import Course
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.settings import PROJECT_ROOT, Settings
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.web.app import create_app
from tests.support.smtp_server import ReceivedMail, RecordingSMTPServer

COURSE_SLUG = "sourdough-from-scratch"
# Monday 2 March 2026, 08:00 UTC: an hour before the course's 09:00 weekday send time in UTC.
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
TEST_BASE_URL = "http://testserver"  # what TestClient calls itself, so links in mail open directly
PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"

# What `import *` brings into a test module: the fixtures (helpers are imported by name).
__all__ = ["web_clock", "web_smtp", "web_stack", "client", "pg_web_database_url", "pg_web_stack"]


def web_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "var_dir": tmp_path,
        "mail_dir": tmp_path / "mail",
        "secret_key": "web-test-secret",
        "base_url": TEST_BASE_URL,
        "broker_url": "memory://",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class WebStack:
    """One test's world: settings, database sessions, clock and SMTP server."""

    settings: Settings
    sessions: sessionmaker[Session]
    clock: ManualClock
    smtp: RecordingSMTPServer
    _delivered: int = field(default=0)

    def deliver(self) -> list[EmailMessage]:
        """One dispatcher cycle with the real sender, after handling the queued signups as the
        dispatch task does; returns the messages it sent."""
        self.handle_signups()
        transport = SMTPTransport(SMTPConfig(self.smtp.host, self.smtp.port))
        sender = Sender(
            self.settings,
            sessions=self.sessions,
            transport=transport,
            renderer=Renderer(self.settings.templates_dir),
            signer=signer_from_settings(self.settings),
            clock=self.clock,
        )
        try:
            dispatch_due(
                self.sessions,
                settings=self.settings,
                clock=self.clock,
                enqueue=lambda ids, token, urgent: sender.send_claimed(ids, token),
            )
        finally:
            transport.close()
        received: list[ReceivedMail] = self.smtp.received
        new = received[self._delivered :]
        self._delivered = len(received)
        return [mail.message for mail in new]

    def handle_signups(self) -> dict[str, int]:
        """What the worker does with the signups the pages queued (before every dispatch)."""
        outcomes = handle_signups(self.sessions, limits=SignupLimits.from_settings(self.settings), now=self.clock.now())
        return {str(outcome): count for outcome, count in outcomes.items()}

    def course_id(self) -> int:
        with self.sessions() as session:
            course_id = session.scalar(select(Course.id).where(Course.slug == COURSE_SLUG))
            assert course_id is not None
            return course_id


def prepare(settings: Settings, clock: ManualClock, smtp: RecordingSMTPServer) -> WebStack:
    engine = get_engine(settings)
    schema.upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        import_content(session, PROJECT_ROOT / "content", now=clock.now())
    return WebStack(settings=settings, sessions=sessions, clock=clock, smtp=smtp)


@pytest.fixture
def web_clock() -> Iterator[ManualClock]:
    """The course calendar and real time both, so a test walks past a session's idle limit or a
    link's expiry as it walks through days (tests of the two apart set their own)."""
    clock = ManualClock(START)
    set_clock(clock)
    set_wall_clock(clock)
    yield clock
    set_clock(None)
    set_wall_clock(None)


@pytest.fixture
def admin_live_stack(tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer) -> Iterator[WebStack]:
    """The app under uvicorn on a free port (for Chromium), on its own SQLite database."""
    from tests.support.browser import held_port, served

    listener = held_port()
    settings = web_settings(
        tmp_path, f"sqlite:///{tmp_path / 't.db'}", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
        smtp_host=web_smtp.host, smtp_port=web_smtp.port,
    )  # fmt: skip
    stack = prepare(settings, web_clock, web_smtp)
    with served(create_app(settings), listener):
        yield stack
    get_engine(settings).dispose()


@pytest.fixture
def web_smtp() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def web_stack(tmp_path: Path, web_clock: ManualClock, web_smtp: RecordingSMTPServer) -> Iterator[WebStack]:
    settings = web_settings(
        tmp_path, f"sqlite:///{tmp_path / 't.db'}", smtp_host=web_smtp.host, smtp_port=web_smtp.port
    )
    stack = prepare(settings, web_clock, web_smtp)
    yield stack
    get_engine(settings).dispose()


@pytest.fixture
def client(web_stack: WebStack) -> Iterator[TestClient]:
    with TestClient(create_app(web_stack.settings), base_url=TEST_BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def pg_web_database_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards; skips when none answers."""
    admin: Engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"course_web_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means there is no server to use
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_web_stack(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> Iterator[WebStack]:
    """web_stack on a PostgreSQL database of the test's own."""
    settings = web_settings(tmp_path, pg_web_database_url, smtp_host=web_smtp.host, smtp_port=web_smtp.port)
    stack = prepare(settings, web_clock, web_smtp)
    yield stack
    get_engine(settings).dispose()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def link_in(message: EmailMessage, path: str) -> str:
    """The first link to `path` (e.g. "/confirm/") in the plain-text part of a message."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, "the message has no text part"
    match = re.search(rf"https?://[^/\s]+{re.escape(path)}[A-Za-z0-9_.\-]+", body.get_content())
    assert match, f"no {path} link in:\n{body.get_content()}"
    return match.group(0)
