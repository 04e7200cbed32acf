"""signup requests: the web queues every signup alike, a worker handles it, the confirmation link
confirms exactly the details of its own signup

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-25 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "signup_requests",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_delivery_id", BIG_ID, nullable=True),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["confirm_delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    unhandled = sa.text("handled_at IS NULL")
    with op.batch_alter_table("signup_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_signup_requests_unhandled", ["id"], unique=False, postgresql_where=unhandled, sqlite_where=unhandled
        )
        batch_op.create_index("ix_signup_requests_confirm_delivery", ["confirm_delivery_id"], unique=True)
        batch_op.create_index("ix_signup_requests_requested_at", ["requested_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signup_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_signup_requests_requested_at")
        batch_op.drop_index("ix_signup_requests_confirm_delivery")
        batch_op.drop_index("ix_signup_requests_unhandled")
    op.drop_table("signup_requests")
