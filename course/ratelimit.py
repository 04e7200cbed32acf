"""Rate limits shared by every web process: fixed-window counters in the database (one row per
scope, key and window in rate_limit_hits), so a limit holds across processes and machines. The key
is an HMAC of the counted value (an IP or email address), so the table holds no personal data."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.models import RateLimitHit


@dataclass(frozen=True)
class RateLimit:
    scope: str  # what is counted, e.g. "signup-ip"
    limit: int  # hits allowed per window
    window: timedelta


def rate_limit_key(secret: str, value: str) -> str:
    """What the counter table stores instead of an IP or email address."""
    return hmac.new(secret.encode(), value.lower().encode(), hashlib.sha256).hexdigest()


def window_start(now: datetime, window: timedelta) -> datetime:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, timezone.utc)


def take_rate_limit(session: Session, rule: RateLimit, key: str, *, now: datetime) -> bool:
    """Count one hit against `rule` for `key`; True while the window's count is within the limit.

    One upsert that returns the new count, so concurrent web processes never lose a hit and
    never need a lock of their own (the row's lock serialises them)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RateLimitHit).values(
        scope=rule.scope, key=key, window_start=window_start(now, rule.window), hits=1
    )
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key", "window_start"], set_={"hits": RateLimitHit.hits + 1}
    ).returning(RateLimitHit.hits)
    hits = session.execute(statement).scalar_one()
    return hits <= rule.limit


def purge_rate_limits(session: Session, *, before: datetime) -> int:
    return session.execute(delete(RateLimitHit).where(RateLimitHit.window_start < before)).rowcount
