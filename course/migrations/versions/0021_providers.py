"""Providers per course and campaign, and why the system paused a campaign.

courses.provider and campaigns.provider: the mail provider their mail takes first (NULL: routed by
From domain and the fallback order). campaigns.paused_reason: set when a campaign is paused by the
system (its error rate passed campaign_max_error_rate), shown in the admin.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: PostgreSQL adds them without rewriting the tables.
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider", sa.String(length=64), nullable=True))
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("paused_reason")
        batch_op.drop_column("provider")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("provider")
