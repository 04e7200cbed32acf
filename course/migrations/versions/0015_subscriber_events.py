"""subscriber_events (the append-only record behind a subscriber's timeline), and the indexes of the
admin's subscriber list: trigram indexes for search on PostgreSQL (pg_trgm), signup date and status
in the list's keyset order (branch h-readersa).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Trusted since PostgreSQL 13: the database's owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "subscriber_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subscriber_id", BigId, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_subscriber_events_subscriber", "subscriber_events", ["subscriber_id", "occurred_at", "id"])
    op.create_index("ix_subscriber_events_kind", "subscriber_events", ["kind", "occurred_at"])
    # On SQLite the PostgreSQL options are ignored: plain indexes, as the models describe them there.
    op.create_index(
        "ix_subscribers_email_trgm", "subscribers", ["email"], postgresql_using="gin", postgresql_ops={"email": "gin_trgm_ops"}
    )
    op.create_index(
        "ix_subscribers_name_trgm", "subscribers", ["name"], postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}
    )
    op.create_index("ix_subscribers_created_at", "subscribers", ["created_at", "id"])
    op.create_index("ix_subscribers_status", "subscribers", ["status", "id"])


def downgrade() -> None:
    for name in ("ix_subscribers_status", "ix_subscribers_created_at", "ix_subscribers_name_trgm", "ix_subscribers_email_trgm"):
        op.drop_index(name, table_name="subscribers")
    op.drop_table("subscriber_events")
    # pg_trgm stays: other objects may use it, and it holds no data.
