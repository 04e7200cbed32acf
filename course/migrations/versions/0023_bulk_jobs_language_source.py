"""Bulk jobs, and a subscriber's language and signup source.

bulk_jobs: a bulk action over more subscribers than the request runs inline, applied by the
worker in keyset batches (course.audience.bulk_jobs). subscribers.language (the admin's filter,
with its index in the list's keyset order) and subscribers.source (form, api, import:<id>, admin,
cli): nullable with no default, so PostgreSQL adds them without rewriting the table.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("filter_query", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_bulk_jobs_open", "bulk_jobs", ["state", "id"], unique=False)
    # Plain ADD COLUMN (no batch copy of the table on SQLite, which would lose the expression index).
    op.add_column("subscribers", sa.Column("language", sa.String(length=8), nullable=True))
    op.add_column("subscribers", sa.Column("source", sa.String(length=40), nullable=True))
    # A constant default: PostgreSQL adds it without rewriting the queue.
    op.add_column("signup_requests", sa.Column("source", sa.String(length=10), server_default="form", nullable=False))
    op.create_index("ix_subscribers_language", "subscribers", ["language", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_subscribers_language", table_name="subscribers")
    op.drop_column("signup_requests", "source")
    op.drop_column("subscribers", "source")
    op.drop_column("subscribers", "language")
    op.drop_index("ix_bulk_jobs_open", table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
