"""Fixtures over real services: a PostgreSQL database migrated once per run and emptied per test,
SQLite files, Redis, an aiosmtpd server, and settings that point at them.

Outside CI a missing service skips the tests that need it, with the reason; in CI (CI=true) it
fails them, so a green CI run always means the real services were used."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from course import schema
from course.clock import ManualClock, set_clock, set_wall_clock
from course.db import make_engine
from course.settings import Settings, get_settings
from tests.support.services import (
    PG_ADMIN_URL,
    REDIS_TEST_URL,
    emptied,
    make_settings,
    migrated_sqlite,
    unavailable,
)
from tests.support.smtp_server import RecordingSMTPServer

# Fixtures shared by several packages of tests live in these modules; test modules never import them.
pytest_plugins = ["tests.support.pipeline_fixtures", "tests.support.web_fixtures", "tests.support.browser"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run, migrated once with Alembic, dropped at the end."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = f"course_test_{uuid.uuid4().hex[:10]}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL to test against
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on PostgreSQL and on the embedded SQLite."""
    if request.param == "postgres":
        return emptied(request.getfixturevalue("postgres_url"))
    return migrated_sqlite(tmp_path / "course.db")


@pytest.fixture
def pg_database_url(postgres_url: str) -> str:
    return emptied(postgres_url)


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_server: RecordingSMTPServer) -> Settings:
    return make_settings(tmp_path, database_url, smtp_port=smtp_server.port, smtp_host=smtp_server.host)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.sqlalchemy_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """Thursday 5 March 2026, noon UTC: the US clocks go forward three days later."""
    manual = ManualClock(datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc))
    set_clock(manual)
    set_wall_clock(manual)  # real time too: link expiry and rate limits walk with the test's days
    yield manual
    set_clock(None)
    set_wall_clock(None)


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
