"""admin accounts: admins (argon2 password, role, optional TOTP), recovery codes, sessions, API tokens;
campaign fields the web admin edits (preheader, audience, local-time schedule, author, pause)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("password_must_change", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_admins_email_lower", "admins", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "admin_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["admin_id"], ["admins.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_recovery_codes_admin_id", "admin_recovery_codes", ["admin_id"])
    op.create_table(
        "admin_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("second_factor_pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["admin_id"], ["admins.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_admin_sessions_admin_id", "admin_sessions", ["admin_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["admins.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )


    # Plain ADD COLUMNs: SQLite would have to copy the campaigns table to add a foreign key, and
    # dropping the old copy would cascade into deliveries. created_by is therefore a bare id.
    op.add_column("campaigns", sa.Column("preheader", sa.String(length=200), server_default="", nullable=False))
    op.add_column("campaigns", sa.Column("audience", sa.JSON(), nullable=True))
    op.add_column("campaigns", sa.Column("send_local", sa.DateTime(timezone=False), nullable=True))
    op.add_column("campaigns", sa.Column("created_by", sa.Integer(), nullable=True))
    op.add_column("campaigns", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaigns", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deliveries", sa.Column("test_campaign_id", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("test_address", sa.String(length=320), nullable=True))


CAMPAIGN_COLUMNS = ("paused_at", "updated_at", "created_by", "send_local", "audience", "preheader")


def downgrade() -> None:
    for name in CAMPAIGN_COLUMNS:  # plain DROP COLUMN (SQLite >= 3.35), for the reason above
        op.drop_column("campaigns", name)
    for name in ("test_address", "test_campaign_id"):
        op.drop_column("deliveries", name)
    op.drop_table("api_tokens")
    op.drop_index("ix_admin_sessions_admin_id", table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_index("ix_admin_recovery_codes_admin_id", table_name="admin_recovery_codes")
    op.drop_table("admin_recovery_codes")
    op.drop_index("uq_admins_email_lower", table_name="admins")
    op.drop_table("admins")
