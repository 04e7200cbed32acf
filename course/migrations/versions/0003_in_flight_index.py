"""Index for the dispatcher's back-pressure count of rows in flight.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = sa.text("state IN ('leased', 'sending')")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_in_flight", ["lease_expires_at"], unique=False, postgresql_where=IN_FLIGHT, sqlite_where=IN_FLIGHT
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_in_flight", postgresql_where=IN_FLIGHT, sqlite_where=IN_FLIGHT)
