"""campaign_test_sends: a test send's content as it was when the test was asked for, so an edit
saved before it goes out does not change it, and its view-in-browser page can show it (branch h-mail).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A table of its own rather than columns on `deliveries`: only test sends have a snapshot, and
    # the hot table's rows stay as narrow as they were. Test rows queued before this migration have
    # none; the sender shows them the campaign as it is now, as it always did.
    op.create_table(
        "campaign_test_sends",
        sa.Column("delivery_id", BigId, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("preheader", sa.String(length=200), nullable=False),
        sa.Column("body_markdown", sa.Text(), nullable=False),
        sa.Column("sender_name", sa.String(length=200), nullable=False),
        sa.Column("sender_email", sa.String(length=320), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_test_sends")
