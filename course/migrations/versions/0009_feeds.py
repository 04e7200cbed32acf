"""courses.language: the language of a course's email and page frame ("en", "de", "fr").

Feeds need no table: what a feed added to a course is recorded in the content folder
(content/feeds/<slug>.toml), which stays the one source of truth for lessons.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant server default: PostgreSQL adds the column without rewriting the table, and every
    # existing course keeps the English frame it had.
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=False, server_default="en"))


def downgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("language")
