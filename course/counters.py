"""Counters kept up to date in the transaction of the change they count, so the dashboard and the
course funnels read a few hundred rows instead of scanning millions (issues #25, #26).

What is counted, and who adds to it (nobody else writes the `counters` table):

- scope "events", key an event kind (signed_up, confirmed, unsubscribed, bounced…), per UTC day of
  the event: course.audience.events.record_event(s), and the two statements that write the event
  record themselves (course.ledger.suppress; the one-click unsubscribe in course.audience.enrollment).
- scope "deliveries", key a settled state (sent, failed, bounced), per UTC day it was settled:
  course.ledger (record, fail_exhausted_leases, insert_lesson_rows for the bench's history).
- scope "lesson_sent", key a lesson id, per UTC day: the same ledger calls, for the funnels.

Contention: several send workers settle batches at once, and every batch adds to the same figure
("deliveries sent today"). An upsert locks its row until the transaction commits, so one row per
figure would queue every worker behind the others' commits. Each figure is therefore SHARDS rows;
a writer adds to the shard of its process and thread (one transaction at a time per thread), and
a reader sums the shards. Within one call the rows are written in sorted order, so two writers
that share a shard take its rows in the same order and cannot deadlock on them.

Counts are of transitions, not of rows that exist now: a row deleted later (an erased reader's
rows stay, anonymised; a deleted course's go) stays counted, as the issue asks of funnels.
"""

from __future__ import annotations

import os
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from typing import Any

from sqlalchemy import Insert, Select, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.models import Counter

SHARDS = 16
EVENTS = "events"
DELIVERIES = "deliveries"
LESSON_SENT = "lesson_sent"


def shard_of_this_thread() -> int:
    """The shard this process and thread add to: different workers (processes) and a web
    process's request threads mostly land on different rows."""
    return hash((os.getpid(), threading.get_ident())) % SHARDS


def add(session: Session, counts: Mapping[tuple[str, str, date], int]) -> None:
    """Add `counts` ((scope, key, day) -> n) to the figures, in one upsert statement. Zero counts
    are skipped; nothing to add writes nothing."""
    shard = shard_of_this_thread()
    rows = [
        {"scope": scope, "key": str(key), "day": day, "shard": shard, "value": int(n)}
        for (scope, key, day), n in sorted(counts.items())
        if n
    ]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Counter)
    statement = statement.on_conflict_do_update(
        index_elements=[Counter.scope, Counter.key, Counter.day, Counter.shard],
        set_={"value": Counter.value + statement.excluded.value},
    )
    session.execute(statement, rows)


def upsert_from(rows: Select[Any]) -> Insert:
    """PostgreSQL: an INSERT … SELECT that adds `rows` (columns scope, key, day, shard, value; each
    (scope, key, day, shard) at most once) to the figures, for a caller that counts inside its own
    statement (a data-modifying CTE's RETURNING), so counting costs no round trip of its own."""
    statement = postgresql.insert(Counter).from_select(["scope", "key", "day", "shard", "value"], rows)
    return statement.on_conflict_do_update(
        index_elements=[Counter.scope, Counter.key, Counter.day, Counter.shard],
        set_={"value": Counter.value + statement.excluded.value},
    )


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def add_one(session: Session, scope: str, key: str, at: datetime, n: int = 1) -> None:
    add(session, {(scope, str(key), utc_day(at)): n})


def tally(scope: str, keys: Iterable[object], at: datetime) -> dict[tuple[str, str, date], int]:
    """Keys seen at one moment as counts per (scope, key, UTC day)."""
    day = utc_day(at)
    return {(scope, str(key), day): n for key, n in Tally(keys).items()}


def per_day(session: Session, scope: str, keys: Iterable[str], *, first: date, last: date) -> dict[str, dict[date, int]]:
    """Each key's figure per day from `first` to `last` (both included; days without a row are
    absent): one GROUP BY over the counters' primary key."""
    wanted = [str(key) for key in keys]
    rows = session.execute(
        select(Counter.key, Counter.day, func.sum(Counter.value))
        .where(Counter.scope == scope, Counter.key.in_(wanted), Counter.day >= first, Counter.day <= last)
        .group_by(Counter.key, Counter.day)
    ).all()
    figures: dict[str, dict[date, int]] = {key: {} for key in wanted}
    for key, day, value in rows:
        figures[key][_as_date(day)] = int(value or 0)
    return figures


def totals(session: Session, scope: str, keys: Iterable[str]) -> dict[str, int]:
    """Each key's figure over all days."""
    wanted = [str(key) for key in keys]
    if not wanted:
        return {}
    rows = session.execute(
        select(Counter.key, func.sum(Counter.value)).where(Counter.scope == scope, Counter.key.in_(wanted)).group_by(Counter.key)
    ).all()
    found = {key: int(value or 0) for key, value in rows}
    return {key: found.get(key, 0) for key in wanted}


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# The counters as the rows they count imply, for a database that has rows but no counters yet
# (migration 0022, and the bench after it seeds with set-based SQL). Set-based; UTC days; shard 0.
# Rows settled before they were counted have only the moment the ledger keeps: sent_at for sent
# rows, due_at (the last attempt's due time) for failed and bounced ones.
def backfill_statements(dialect_name: str) -> list[str]:
    def day(column: str) -> str:
        # SQLite keeps naive UTC text; PostgreSQL's date of a timestamptz follows the session's zone.
        return f"date({column})" if dialect_name == "sqlite" else f"CAST(({column}) AT TIME ZONE 'UTC' AS DATE)"

    settled_at = "CASE WHEN state = 'sent' THEN sent_at ELSE due_at END"
    return [
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT '{EVENTS}', kind, {day("occurred_at")}, 0, count(*) FROM subscriber_events
        GROUP BY kind, {day("occurred_at")}""",
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT '{DELIVERIES}', state, {day(settled_at)}, 0, count(*)
        FROM deliveries WHERE state IN ('sent', 'failed', 'bounced')
        GROUP BY state, {day(settled_at)}""",
        f"""INSERT INTO counters (scope, key, day, shard, value)
        SELECT '{LESSON_SENT}', CAST(lesson_id AS VARCHAR(64)), {day("sent_at")}, 0, count(*)
        FROM deliveries WHERE state = 'sent' AND lesson_id IS NOT NULL
        GROUP BY lesson_id, {day("sent_at")}""",
    ]


def backfill(session: Session) -> None:
    """Replace every counter by what the rows imply (see backfill_statements)."""
    session.execute(text("DELETE FROM counters"))
    for statement in backfill_statements(session.get_bind().dialect.name):
        session.execute(text(statement))


def window(today: date, days: int) -> tuple[date, date]:
    return today - timedelta(days=days - 1), today
