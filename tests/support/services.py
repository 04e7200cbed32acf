"""What the tests share that is not a fixture: where the real services are, how a missing one is
reported (skip outside CI, fail in CI), the seed article, and settings for a test's own folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from course import schema
from course.db import make_engine
from course.models import Base
from course.settings import PROJECT_ROOT, Settings

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
# Under pytest-xdist each worker has Redis databases of its own (redis_test_database).
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def redis_test_database(default: int) -> int:
    """The Redis database a test uses for `default` (15: the tests, 13: the benchmark smoke tests)
    on this xdist worker: worker 0 the default itself, worker n the default less 4n (`make test`
    runs at most four workers)."""
    if not 0 <= XDIST_WORKER < 4:
        raise RuntimeError(f"xdist worker {XDIST_WORKER}: the tests have Redis databases for four workers (-n 4 at most)")
    return default - 4 * XDIST_WORKER


REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{redis_test_database(15)}")
SMOKE_REDIS_URL = os.environ.get("TEST_BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{redis_test_database(13)}")
SEED_ARTICLE = PROJECT_ROOT.parent / "shared" / "data" / "seed-article-oxytocin.txt"


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI needs every service: see scripts/services.sh)")
    pytest.skip(reason)


def seed_article_path() -> Path:
    """The publisher's real article: CI always has ../shared, so there its absence fails the test;
    in a user's clone without it the test skips, with the reason in pytest's summary."""
    if not SEED_ARTICLE.exists():
        unavailable(f"seed article not found at {SEED_ARTICLE}: ../shared is absent in this clone")
    return SEED_ARTICLE


def empty_tables(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def emptied(url: str) -> str:
    engine = make_engine(url)
    try:
        empty_tables(engine)
    finally:
        engine.dispose()
    return url


def migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "var_dir": tmp_path / "var",
        "mail_dir": tmp_path / "var" / "mail",
        "secret_key": "test-secret",
        "base_url": "https://courses.example.org",
        "retry_base_seconds": 60.0,
        "broker_url": "memory://",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
