"""The subscriber event record: what happened to each subscriber, for their timeline (and the
courses' funnels). Append-only: rows are inserted, never updated; each is written in the same
transaction as the change it records, through these functions, so a change rolled back leaves no
event behind and no change goes unrecorded.

Deliveries are not copied here: a timeline reads them from the ledger's rows (course.audience.directory).
Bounces are written by course.ledger.suppress, which makes that change and cannot import this module.

Every event written here also adds to its kind's counter for the day (course.counters), in the same
transaction: the dashboard reads those, not this table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Select, String, insert, literal, select
from sqlalchemy.orm import Session

from course import counters
from course.models import SubscriberEvent, SubscriberEventKind, UTCDateTime


def record_event(
    session: Session,
    subscriber_id: int,
    kind: SubscriberEventKind | str,
    *,
    now: datetime,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event. `actor` is the admin who acted (None: the subscriber or the system);
    `detail` a small JSON object (course, tag, reason, source…)."""
    session.execute(
        insert(SubscriberEvent).values(
            subscriber_id=subscriber_id, kind=str(SubscriberEventKind(kind)), occurred_at=now, actor=actor, detail=detail
        )
    )
    counters.add_one(session, counters.EVENTS, str(SubscriberEventKind(kind)), now)


def record_events(
    session: Session,
    subscriber_ids: Sequence[int] | Select[Any],
    kind: SubscriberEventKind | str,
    *,
    now: datetime,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """The same event for many subscribers in one statement: a list of ids, or a SELECT of one
    column of ids (a bulk action's result). Returns how many were written."""
    kind = str(SubscriberEventKind(kind))
    if not isinstance(subscriber_ids, Select):
        if not subscriber_ids:
            return 0
        session.execute(
            insert(SubscriberEvent),
            [dict(subscriber_id=subscriber_id, kind=kind, occurred_at=now, actor=actor, detail=detail) for subscriber_id in subscriber_ids],
        )
        counters.add_one(session, counters.EVENTS, kind, now, len(subscriber_ids))
        return len(subscriber_ids)
    ids = subscriber_ids.subquery()
    source = select(
        ids.c[0],
        literal(kind, String()),
        literal(now, UTCDateTime()),
        literal(actor, String()),
        literal(detail, JSON()),
    )
    written = int(
        session.execute(
            insert(SubscriberEvent)
            .from_select(["subscriber_id", "kind", "occurred_at", "actor", "detail"], source)
            .execution_options(preserve_rowcount=True)  # else an ORM session's INSERT … SELECT reports -1
        ).rowcount
    )
    counters.add_one(session, counters.EVENTS, kind, now, written)
    return written


def events_of(session: Session, subscriber_id: int) -> list[SubscriberEvent]:
    """A subscriber's events, oldest first."""
    return list(
        session.scalars(
            select(SubscriberEvent)
            .where(SubscriberEvent.subscriber_id == subscriber_id)
            .order_by(SubscriberEvent.occurred_at, SubscriberEvent.id)
        )
    )
