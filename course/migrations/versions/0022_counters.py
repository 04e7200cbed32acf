"""Counters and the indexes the admin's figures need at a million readers (issues #25/#26, branch
h-scale):

- counters: figures kept up to date in the transaction of the change they count (course.counters),
  filled here from the rows already there (events per kind and day, settled deliveries per state
  and day, lesson rows sent per lesson and day), so the dashboard and the funnels read a few hundred
  rows instead of scanning the event record and the ledger.
- ix_deliveries_lesson_open (lesson_id, state) over open lesson rows (pending, held, leased): a
  course's next sends and a changed lesson's open rows. Nothing led on lesson_id before
  (uq_deliveries_subscriber_lesson leads on the reader); open rows only, so a send pays two index
  insertions a lesson row (inserted, claimed), and sent history none.
- ix_deliveries_subscriber_other (subscriber_id) over rows that are neither a lesson's nor a
  campaign's (account mail, tests): with the two unique indexes leading on subscriber_id, every row
  of one reader is found through an index (models.subscriber_rows), so a reader's timeline and an
  unsubscribe from everything stop reading the whole ledger (420 ms at 4.7M rows -> 0.3 ms); lesson
  and campaign rows never enter it, so sending pays nothing for it.
- ix_deliveries_failed (due_at) WHERE state = 'failed': what needs attention, without a scan.
- ix_enrollments_course_status (course_id, status): a course's readers by state (the courses page,
  the funnel) as an index-only scan; the unique (subscriber_id, course_id) leads on the reader.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "day", "shard"),
    )
    open_lesson_rows = sa.text("lesson_id IS NOT NULL AND state IN ('pending', 'held', 'leased')")
    op.create_index(
        "ix_deliveries_lesson_open", "deliveries", ["lesson_id", "state"],
        postgresql_where=open_lesson_rows, sqlite_where=open_lesson_rows,
    )  # fmt: skip
    neither_lesson_nor_campaign = sa.text("lesson_id IS NULL AND campaign_id IS NULL")
    op.create_index(
        "ix_deliveries_subscriber_other", "deliveries", ["subscriber_id"],
        postgresql_where=neither_lesson_nor_campaign, sqlite_where=neither_lesson_nor_campaign,
    )  # fmt: skip
    op.create_index(
        "ix_deliveries_failed", "deliveries", ["due_at"],
        postgresql_where=sa.text("state = 'failed'"), sqlite_where=sa.text("state = 'failed'"),
    )  # fmt: skip
    op.create_index("ix_enrollments_course_status", "enrollments", ["course_id", "status"])
    for statement in _backfill(op.get_bind().dialect.name):
        op.execute(statement)


def _backfill(dialect_name: str) -> list[str]:
    """The counters as the rows already there imply (a frozen copy of course.counters'
    backfill_statements as of this revision): UTC days, shard 0. Rows settled before they were
    counted have only the moment the ledger keeps: sent_at for sent rows, due_at for the others."""

    def day(column: str) -> str:
        return f"date({column})" if dialect_name == "sqlite" else f"CAST(({column}) AT TIME ZONE 'UTC' AS DATE)"

    settled_at = "CASE WHEN state = 'sent' THEN sent_at ELSE due_at END"
    return [
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT 'events', kind, {day("occurred_at")}, 0, count(*) FROM subscriber_events
        GROUP BY kind, {day("occurred_at")}""",
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT 'deliveries', state, {day(settled_at)}, 0, count(*)
        FROM deliveries WHERE state IN ('sent', 'failed', 'bounced')
        GROUP BY state, {day(settled_at)}""",
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT 'lesson_sent', CAST(lesson_id AS VARCHAR(64)), {day("sent_at")}, 0, count(*)
        FROM deliveries WHERE state = 'sent' AND lesson_id IS NOT NULL
        GROUP BY lesson_id, {day("sent_at")}""",
    ]


def downgrade() -> None:
    op.drop_index("ix_enrollments_course_status", table_name="enrollments")
    op.drop_index("ix_deliveries_failed", table_name="deliveries")
    op.drop_index("ix_deliveries_subscriber_other", table_name="deliveries")
    op.drop_index("ix_deliveries_lesson_open", table_name="deliveries")
    op.drop_table("counters")
