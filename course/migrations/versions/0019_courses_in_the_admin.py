"""Courses in the admin (branch h-courses, issue #26):

- deliveries.test_lesson_id: an admin's "send me this lesson" test, the lesson it shows. A bare id
  like test_campaign_id: SQLite would copy the whole table to add a foreign key. The row's
  lesson_id stays NULL, so a test is in no count of the lesson and never collides with the
  reader's own row of it.
- courses.origin: "files" (every course so far) or "admin" (published in the web admin).
- courses.feed_url, feed_etag, feed_last_modified, feed_checked_at: an admin course made from a
  blog's feed, polled with a conditional GET.
- course_articles: the articles an admin course was published from, as uploaded (or as a feed
  entry became one: entry_id).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("test_lesson_id", sa.Integer(), nullable=True))
    op.add_column("courses", sa.Column("origin", sa.String(length=16), nullable=False, server_default="files"))
    op.add_column("courses", sa.Column("feed_url", sa.String(length=2000), nullable=True))
    op.add_column("courses", sa.Column("feed_etag", sa.String(length=300), nullable=True))
    op.add_column("courses", sa.Column("feed_last_modified", sa.String(length=100), nullable=True))
    op.add_column("courses", sa.Column("feed_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "course_articles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("course_id", sa.Integer(), sa.ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry_id", sa.String(length=1000), nullable=True),
        sa.UniqueConstraint("course_id", "position"),
    )


def downgrade() -> None:
    op.drop_table("course_articles")
    for name in ("feed_checked_at", "feed_last_modified", "feed_etag", "feed_url", "origin"):
        op.drop_column("courses", name)
    op.drop_column("deliveries", "test_lesson_id")
