"""Alembic is the only way tables are made, so the migrations must build exactly the schema the
models describe (PostgreSQL and SQLite), and walk down to nothing and back up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from course import schema
from course.db import make_engine
from course.models import Base


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    return ScriptDirectory.from_config(schema.alembic_config()).get_current_head() or ""


def migrate(engine: Engine, direction: str, target: str) -> None:
    config = schema.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, target)


def test_postgres_schema_from_migrations_matches_the_models(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    try:
        schema.upgrade(engine)  # already at head: a second upgrade is a no-op
        assert current_revision(engine) == head()
        assert differences(engine) == []
        indexes = {index["name"] for index in inspect(engine).get_indexes("deliveries")}
        assert {"ix_deliveries_due", "ix_deliveries_enrollment", "ix_deliveries_campaign"} <= indexes
        assert "uq_subscribers_email_lower" in {index["name"] for index in inspect(engine).get_indexes("subscribers")}
    finally:
        engine.dispose()


# SQLite cannot reflect the expression index on lower(email), so autogenerate skips it (with these
# warnings); the test checks it by name instead.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_sqlite_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'course.db'}")
    try:
        schema.upgrade(engine)
        assert current_revision(engine) == head()
        assert differences(engine) == []
        model_tables = set(Base.metadata.tables)
        assert model_tables <= set(inspect(engine).get_table_names())
        migrate(engine, "downgrade", "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()
        schema.upgrade(engine)
        assert current_revision(engine) == head()
        assert differences(engine) == []
        assert model_tables <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            index_sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'uq_subscribers_email_lower'"
            ).scalar()
        assert index_sql is not None and "UNIQUE" in index_sql and "lower(email)" in index_sql
    finally:
        engine.dispose()
