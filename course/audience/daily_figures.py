"""The admin dashboard's figures per day: signups, confirmations, unsubscribes and bounces (events
of the subscriber record), deliveries sent, failed and bounced (settled by the ledger), and what
needs attention (rows given up on). Reads only.

Every series comes from course.counters, kept up to date in the transaction of each change: one
GROUP BY over at most (series × days × shards) rows, whatever the number of readers or deliveries.
The failed rows that need attention are counted where they are (a partial index holds only them),
since a requeued row no longer needs a look."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course import counters
from course.models import Delivery, DeliveryState, SubscriberEventKind

WINDOW_DAYS = 90

# series name -> (counter scope, key)
SERIES: dict[str, tuple[str, str]] = {
    "signups": (counters.EVENTS, SubscriberEventKind.SIGNED_UP.value),
    "confirmations": (counters.EVENTS, SubscriberEventKind.CONFIRMED.value),
    "unsubscribes": (counters.EVENTS, SubscriberEventKind.UNSUBSCRIBED.value),
    "bounces": (counters.EVENTS, SubscriberEventKind.BOUNCED.value),
    "sent": (counters.DELIVERIES, DeliveryState.SENT.value),
    "failed": (counters.DELIVERIES, DeliveryState.FAILED.value),
    "bounced": (counters.DELIVERIES, DeliveryState.BOUNCED.value),
}


@dataclass(frozen=True)
class DailyFigures:
    days: list[date]  # oldest first, the last one today
    series: dict[str, list[int]]  # name -> a count per day of `days`
    failed_deliveries: int  # rows in state failed now: each needs a look (course retry-failed)

    def totals(self) -> dict[str, int]:
        return {name: sum(values) for name, values in self.series.items()}


def daily_figures(session: Session, *, now: datetime, days: int = WINDOW_DAYS) -> DailyFigures:
    """1. The window: `days` calendar days (UTC) ending today.
    2. Each series' counter per day, zero-filled (one statement per counter scope).
    3. The failed rows now."""
    first, last = counters.window(counters.utc_day(now), days)
    window = [first + timedelta(days=offset) for offset in range(days)]
    read: dict[tuple[str, str], dict[date, int]] = {}
    for scope in sorted({scope for scope, _ in SERIES.values()}):
        keys = [key for series_scope, key in SERIES.values() if series_scope == scope]
        for key, by_day in counters.per_day(session, scope, keys, first=first, last=last).items():
            read[(scope, key)] = by_day
    series = {name: [read[where].get(day, 0) for day in window] for name, where in SERIES.items()}
    failed_now = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == DeliveryState.FAILED))
    return DailyFigures(window, series, int(failed_now or 0))
