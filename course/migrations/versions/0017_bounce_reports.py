"""bounce_reports: bounces and complaints that came back after sending, one row per report and
recipient, unique by report key so a report read twice changes nothing (branch h-bounces).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bounce_reports",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("report_key", sa.String(length=200), nullable=False, unique=True),
        sa.Column("subscriber_id", BigId, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("delivery_id", BigId, sa.ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Soft bounces are counted per subscriber over a window.
    op.create_index("ix_bounce_reports_subscriber", "bounce_reports", ["subscriber_id", "kind", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_bounce_reports_subscriber", table_name="bounce_reports")
    op.drop_table("bounce_reports")
