"""The admin dashboard's figures per day: signups, confirmations, unsubscribes and bounces (from the
subscribers' own timestamps), deliveries sent, failed and bounced (from the ledger), and what needs
attention (failed deliveries). Reads only; one GROUP BY per series over the window.

Until the event record (course.audience.events) holds these, a day counts each subscriber once per
step by the timestamp it keeps (created, confirmed, unsubscribed_at: a bounce also sets it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.models import Delivery, DeliveryState, Subscriber, SubscriberStatus

WINDOW_DAYS = 90


@dataclass(frozen=True)
class DailyFigures:
    days: list[date]  # oldest first, the last one today
    series: dict[str, list[int]]  # name -> a count per day of `days`
    failed_deliveries: int  # rows given up on in the window: each needs a look (course retry-failed)

    def totals(self) -> dict[str, int]:
        return {name: sum(values) for name, values in self.series.items()}


def _per_day(session: Session, column: Any, since: datetime, *where: Any) -> dict[str, int]:
    day = func.date(column)
    rows = session.execute(select(day, func.count()).where(column >= since, *where).group_by(day)).all()
    return {str(day_value): count for day_value, count in rows}


def daily_figures(session: Session, *, now: datetime, days: int = WINDOW_DAYS) -> DailyFigures:
    """1. The window: `days` calendar days (UTC) ending today.
    2. One count per day and series, zero-filled."""
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    window = [first + timedelta(days=offset) for offset in range(days)]
    counted = {
        "signups": _per_day(session, Subscriber.created_at, since),
        "confirmations": _per_day(session, Subscriber.confirmed_at, since),
        "unsubscribes": _per_day(session, Subscriber.unsubscribed_at, since, Subscriber.status == SubscriberStatus.UNSUBSCRIBED),
        "bounces": _per_day(session, Subscriber.unsubscribed_at, since, Subscriber.status == SubscriberStatus.BOUNCED),
        "sent": _per_day(session, Delivery.sent_at, since, Delivery.state == DeliveryState.SENT),
        "failed": _per_day(session, Delivery.due_at, since, Delivery.state == DeliveryState.FAILED),
        "bounced": _per_day(session, Delivery.due_at, since, Delivery.state == DeliveryState.BOUNCED),
    }
    series = {name: [by_day.get(day.isoformat(), 0) for day in window] for name, by_day in counted.items()}
    return DailyFigures(window, series, sum(series["failed"]))
