"""The admin audit log: every admin action with who, when (wall clock), from where and what.

`record` appends one entry in the caller's transaction, so an action and its entry are written
together or not at all; `entries` reads them newest first by keyset (at, id), filtered. There is
no function to change or delete an entry: nothing in the admin or the API can."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from course.models import AuditEntry

PAGE_SIZE = 50
MAX_DETAIL_TEXT = 500


@dataclass(frozen=True)
class Who:
    """The one acting: an admin (id and address), an API token ("API token 3") or the command line."""

    actor: str
    admin_id: int | None = None
    ip: str = ""


def record(session: Session, who: Who, action: str, *, now: datetime, target: str = "", **detail: Any) -> None:
    """Append one entry. `action` is a dotted name ("subscriber.erase", "import.start"); `detail`
    holds plain values (text is cut to MAX_DETAIL_TEXT characters). Never put a subscriber's address
    here: name them by id, so erasure leaves nothing behind in the log."""
    session.add(
        AuditEntry(
            at=now, admin_id=who.admin_id, actor=who.actor[:320], ip=who.ip[:64], action=action[:64], target=target[:200],
            detail={key: value[:MAX_DETAIL_TEXT] if isinstance(value, str) else value for key, value in detail.items()},
        )
    )
    session.flush()


@dataclass(frozen=True)
class AuditFilter:
    action: str = ""  # an action or its prefix ("campaign." for every campaign action)
    actor: str = ""  # part of the actor's label
    since: datetime | None = None
    until: datetime | None = None


def entries(session: Session, wanted: AuditFilter, *, before: tuple[datetime, int] | None = None, limit: int = PAGE_SIZE) -> list[AuditEntry]:
    """Entries matching `wanted`, newest first; `before` is the (at, id) of the last one already shown."""
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if wanted.action:
        statement = statement.where(or_(AuditEntry.action == wanted.action, AuditEntry.action.startswith(wanted.action, autoescape=True)))
    if wanted.actor:
        statement = statement.where(AuditEntry.actor.contains(wanted.actor, autoescape=True))
    if wanted.since:
        statement = statement.where(AuditEntry.at >= wanted.since)
    if wanted.until:
        statement = statement.where(AuditEntry.at < wanted.until)
    if before is not None:
        statement = statement.where(tuple_(AuditEntry.at, AuditEntry.id) < tuple_(*before))
    return list(session.scalars(statement))
