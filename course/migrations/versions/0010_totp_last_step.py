"""admins.totp_last_step: the time-step of the last authenticator code accepted, so a TOTP code is
accepted once (branch h10).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 22:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not batch mode: a batch rebuild of `admins` on SQLite would lose the
# expression index uq_admins_email_lower (lower(email)). Both databases add and drop a column in place
# (SQLite since 3.35).


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds it without rewriting the table; NULL means no code used yet.
    op.add_column("admins", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE admins DROP COLUMN totp_last_step")
