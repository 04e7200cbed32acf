"""Readers' data (issue #25, part B): CSV imports with their per-row report, the suppression list
(keyed one-way hashes of addresses that must not come back silently) and the admin audit log.

Revision ID: 0016
Revises: 0014 (re-chained onto 0015 at merge)
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscriber_imports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("finished_at", UTC),
        sa.Column("admin_id", sa.Integer()),  # a bare id, like campaigns.created_by
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("course_id", sa.Integer()),
        sa.Column("tag", sa.String(length=64)),
        sa.Column("consent", sa.Text()),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("unknown_columns", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "subscriber_import_rows",
        sa.Column("import_id", sa.Integer(), sa.ForeignKey("subscriber_imports.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("admin_id", sa.Integer()),
    )
    op.create_index("uq_suppressions_address_hash", "suppressions", ["address_hash"], unique=True)
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", UTC, nullable=False),
        sa.Column("admin_id", sa.Integer()),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("suppressions")
    op.drop_table("subscriber_import_rows")
    op.drop_table("subscriber_imports")
