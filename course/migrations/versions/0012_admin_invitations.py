"""admin_invitations, and the ledger rows that mail them: deliveries.invitation_id, and
deliveries.subscriber_id may be NULL (an invitation goes to no subscriber) (branch h-acct).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = "subscriber_id INTEGER NOT NULL,"
_NULLABLE = "subscriber_id INTEGER,"


def _sqlite_subscriber_id(old: str, new: str) -> None:
    """SQLite cannot ALTER a column's NOT NULL, and copying `deliveries` (batch mode) would, on
    dropping the old copy, cascade into signup_requests. Removing or restoring a NOT NULL changes
    nothing stored, so SQLite's documented procedure for such changes applies: edit the table's
    CREATE statement in the schema table and bump schema_version, in this transaction
    (https://www.sqlite.org/lang_altertable.html#otheralter). Restoring it is only done with no
    NULL left (downgrade deletes the invitation rows first)."""
    bind = op.get_bind()
    created = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").scalar()
    if created is None or created.count(old) != 1:
        raise RuntimeError(f"deliveries' schema does not read {old!r} once: {created!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'deliveries'", (created.replace(old, new),)
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    op.create_table(
        "admin_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("link_nonce", sa.String(length=64), nullable=False),
        sa.Column("invited_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("admin_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["invited_by"], ["admins.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["admin_id"], ["admins.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.add_column("deliveries", sa.Column("invitation_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_subscriber_id(_NOT_NULL, _NULLABLE)
    else:
        op.alter_column("deliveries", "subscriber_id", existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE subscriber_id IS NULL")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_subscriber_id(_NULLABLE, _NOT_NULL)
    else:
        op.alter_column("deliveries", "subscriber_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_column("deliveries", "invitation_id")
    op.drop_table("admin_invitations")
