"""The one engine and session factory. SQLite (the embedded default) gets WAL and a busy timeout so
a web process, a worker and beat can share the file; PostgreSQL gets a plain pooled engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from course.settings import Settings, get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pre-ping: it cost a round trip (and, measured, a transaction) on every checkout, a third of
    # a signup's. Liveness instead: a connection psycopg already knows is closed or broken is
    # replaced at checkout for free (_discard_dead); one that died unnoticed fails its statement
    # once, and SQLAlchemy then invalidates the whole pool, so after a server restart each process
    # loses one request, not one per pooled connection; pool_recycle retires connections before
    # idle timeouts in proxies and firewalls cut them.
    engine = create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800, pool_use_lifo=True)
    event.listen(engine, "checkout", _discard_dead)
    return engine


def _discard_dead(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("connection closed or broken; the pool opens a new one")


@lru_cache
def _engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    if settings.is_sqlite:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    return _engine_for(settings.sqlalchemy_url)


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(settings), expire_on_commit=False)


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with session_factory(settings).begin() as session:
        yield session
