"""Ledger rows made directly, for the tests of the ledger and the dispatcher."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from course.audience.enrollment import get_or_create_subscriber
from course.models import Delivery, DeliveryKind, DeliveryState

_numbers = itertools.count(1)


def add_rows(
    session: Session, now: datetime, due: list[timedelta], *, priority: int = 100, state: str = DeliveryState.PENDING
) -> list[int]:
    """One transactional row per due offset (one subscriber each: the ledger is one row per email)."""
    ids = []
    for offset in due:
        subscriber = get_or_create_subscriber(session, f"reader-{next(_numbers)}@example.org", now=now)
        row = Delivery(
            subscriber_id=subscriber.id,
            kind=DeliveryKind.TRANSACTIONAL,
            template="confirm",
            priority=priority,
            due_at=now + offset,
            state=state,
            attempts=0,
            created_at=now,
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids
