"""deliveries.test_lesson_id: an admin's "send me this lesson" test, the lesson it shows (branch
h-courses, issue #26). A bare id like test_campaign_id: SQLite would copy the whole table to add a
foreign key. The row's lesson_id stays NULL, so a test is in no count of the lesson and never
collides with the reader's own row of it.

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("test_lesson_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("deliveries", "test_lesson_id")
