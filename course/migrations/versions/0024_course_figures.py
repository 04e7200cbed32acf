"""The course figures at a million readers (issue #26, branch h-coursefig):

- enrollments.left_after_position: the highest lesson position an enrollment had been sent when it
  was unsubscribed (NULL: none), set by every unsubscribe path (enrollment.stopped_values) and
  backfilled here from the ledger, so the funnel's "unsubscribed after lesson n" is a GROUP BY over
  ix_enrollments_left_after (unsubscribed enrollments only) instead of one ledger probe per leaver.
- ix_deliveries_lesson_due (lesson_id, due_at) over queued lesson rows (pending, leased): a course's
  next sends read each lesson's first row and a count capped at 10,001 rows.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSUBSCRIBED = "status = 'unsubscribed'"
QUEUED = "lesson_id IS NOT NULL AND state IN ('pending', 'leased')"


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("left_after_position", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE enrollments SET left_after_position = ("
        " SELECT max(lessons.position) FROM deliveries JOIN lessons ON lessons.id = deliveries.lesson_id"
        " WHERE deliveries.enrollment_id = enrollments.id AND deliveries.state = 'sent')"
        " WHERE status = 'unsubscribed'"
    )
    op.create_index(
        "ix_enrollments_left_after",
        "enrollments",
        ["course_id", "left_after_position"],
        postgresql_where=sa.text(UNSUBSCRIBED),
        sqlite_where=sa.text(UNSUBSCRIBED),
    )
    op.create_index(
        "ix_deliveries_lesson_due",
        "deliveries",
        ["lesson_id", "due_at"],
        postgresql_where=sa.text(QUEUED),
        sqlite_where=sa.text(QUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_lesson_due", table_name="deliveries")
    op.drop_index("ix_enrollments_left_after", table_name="enrollments")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("left_after_position")
