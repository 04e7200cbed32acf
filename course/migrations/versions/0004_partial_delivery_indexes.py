"""Partial indexes on deliveries: a lesson row no longer has entries in the campaign indexes, nor a
campaign row in the lesson ones. The two unique constraints become partial unique indexes with the
same meaning (rows with a NULL key never conflicted).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:00:00
"""

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (columns, the column that must be set for a row to be in the index)
UNIQUE = {
    "uq_deliveries_subscriber_lesson": (["subscriber_id", "lesson_id"], "lesson_id"),
    "uq_deliveries_subscriber_campaign": (["subscriber_id", "campaign_id"], "campaign_id"),
}
PLAIN = {
    "ix_deliveries_enrollment": (["enrollment_id"], "enrollment_id"),
    "ix_deliveries_campaign": (["campaign_id", "state"], "campaign_id"),
}


def _where(column: str) -> dict[str, sa.TextClause]:
    condition = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": condition, "sqlite_where": condition}


@contextmanager
def _recreating_on_sqlite() -> Iterator[None]:
    # Dropping a constraint makes SQLite's batch mode copy the table, reflecting the tables it refers
    # to; subscribers' lower(email) index cannot be reflected and needs not be: it is left as it is.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", sa.exc.SAWarning)
        yield


def upgrade() -> None:
    with _recreating_on_sqlite(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in UNIQUE:
            batch_op.drop_constraint(name, type_="unique")
        for name in PLAIN:
            batch_op.drop_index(name)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name, (columns, column) in UNIQUE.items():
            batch_op.create_index(name, columns, unique=True, **_where(column))
        for name, (columns, column) in PLAIN.items():
            batch_op.create_index(name, columns, unique=False, **_where(column))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in [*UNIQUE, *PLAIN]:
            batch_op.drop_index(name)
    with _recreating_on_sqlite(), op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name, (columns, _) in UNIQUE.items():
            batch_op.create_unique_constraint(name, columns)
        for name, (columns, _) in PLAIN.items():
            batch_op.create_index(name, columns, unique=False)
