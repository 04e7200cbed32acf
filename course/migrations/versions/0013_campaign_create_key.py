"""campaigns.create_key: the idempotency key of the admin form that created a draft, so a create
form sent twice (a reload, a double click) makes one draft (issue #21, defect 7).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: added in place on both databases; NULL for every campaign made elsewhere.
    op.add_column("campaigns", sa.Column("create_key", sa.String(length=64), nullable=True))
    op.create_index("uq_campaigns_create_key", "campaigns", ["create_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_campaigns_create_key", table_name="campaigns")
    op.execute("ALTER TABLE campaigns DROP COLUMN create_key")
