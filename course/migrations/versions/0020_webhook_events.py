"""webhook_events: bounces and complaints reported by provider webhooks, stored by the request and
applied by a task; unique by (provider, event id), so a replayed event stores nothing new
(branch h-bounces). bounce_reports gets the reported delivery's campaign and lesson, indexed, so
bounces and complaints are counted per campaign and per lesson without a join through deliveries.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 15:25:00
"""

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@contextmanager
def _recreating_on_sqlite() -> Iterator[None]:
    # SQLite's batch mode copies bounce_reports, reflecting the tables it refers to; subscribers'
    # lower(email) index cannot be reflected and needs not be (as in 0004).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", sa.exc.SAWarning)
        yield


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("return_path", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),
    )
    op.create_index("ix_webhook_events_pending", "webhook_events", ["applied_at", "id"])
    with _recreating_on_sqlite(), op.batch_alter_table("bounce_reports") as batch:
        batch.add_column(sa.Column("campaign_id", BigId, nullable=True))
        batch.add_column(sa.Column("lesson_id", BigId, nullable=True))
        batch.create_foreign_key("fk_bounce_reports_campaign_id_campaigns", "campaigns", ["campaign_id"], ["id"], ondelete="SET NULL")
        batch.create_foreign_key("fk_bounce_reports_lesson_id_lessons", "lessons", ["lesson_id"], ["id"], ondelete="SET NULL")
    # Reports recorded before: their delivery says which campaign or lesson.
    op.execute(
        "UPDATE bounce_reports SET campaign_id = (SELECT campaign_id FROM deliveries WHERE deliveries.id = bounce_reports.delivery_id), "
        "lesson_id = (SELECT lesson_id FROM deliveries WHERE deliveries.id = bounce_reports.delivery_id) WHERE delivery_id IS NOT NULL"
    )
    op.create_index("ix_bounce_reports_campaign", "bounce_reports", ["campaign_id", "kind"])
    op.create_index("ix_bounce_reports_lesson", "bounce_reports", ["lesson_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_bounce_reports_lesson", table_name="bounce_reports")
    op.drop_index("ix_bounce_reports_campaign", table_name="bounce_reports")
    with _recreating_on_sqlite(), op.batch_alter_table("bounce_reports") as batch:
        batch.drop_constraint("fk_bounce_reports_lesson_id_lessons", type_="foreignkey")
        batch.drop_constraint("fk_bounce_reports_campaign_id_campaigns", type_="foreignkey")
        batch.drop_column("lesson_id")
        batch.drop_column("campaign_id")
    op.drop_index("ix_webhook_events_pending", table_name="webhook_events")
    op.drop_table("webhook_events")
