"""deliveries.journal_epoch: the send journal's epoch (its Redis data set) when the row's current
attempt was taken over, cleared once that attempt's outcome is recorded. A take-over that finds a
different epoch knows the journal that would say whether the relay accepted the row is gone: the
row's outcome is unknown, and it takes the back-off path rather than going out again at once
(issue #24, branch h-journal).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row on PostgreSQL, and rows taken over before it
    # have no epoch, which the sender reads as "nothing to compare" (as before this column).
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("journal_epoch", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("journal_epoch")
