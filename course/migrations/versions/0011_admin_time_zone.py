"""admins.time_zone: the zone an admin's pages show times in (branch h-acct).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as in 0010: a batch rebuild of `admins` on SQLite would lose uq_admins_email_lower.


def upgrade() -> None:
    # Nullable, no default: no table rewrite on PostgreSQL; NULL means UTC until one is chosen.
    op.add_column("admins", sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE admins DROP COLUMN time_zone")
