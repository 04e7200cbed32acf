"""Rate limits shared by every web process and worker: sliding windows over counters in the
database (one row per scope, key and fixed window in rate_limit_hits), so a limit holds across
processes and machines. The key is an HMAC of the counted value (an IP or a canonical email
address), so the table holds no personal data.

The window slides: a hit is allowed while this window's count plus the previous window's count,
weighted by how much of the previous window still lies within the last `window`, stays within the
limit. Plain fixed windows let a client spend the limit just before :00 and again just after it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
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
    """Count one hit against `rule` for `key`; True while the sliding window's count is within
    the limit. Refused hits count too, so a client that keeps trying stays refused.

    1. One upsert adds the hit to the current fixed window and returns its count, so concurrent
       processes never lose a hit and need no lock of their own (the row's lock serialises them).
    2. The previous window's count is read, weighted by the share of it still inside the sliding
       window, and added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    current_start = window_start(now, rule.window)
    statement = insert(RateLimitHit).values(scope=rule.scope, key=key, window_start=current_start, hits=1)
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key", "window_start"], set_={"hits": RateLimitHit.hits + 1}
    ).returning(RateLimitHit.hits)
    hits = session.execute(statement).scalar_one()
    if hits > rule.limit:
        return False
    previous = session.scalar(
        select(RateLimitHit.hits).where(
            RateLimitHit.scope == rule.scope,
            RateLimitHit.key == key,
            RateLimitHit.window_start == current_start - rule.window,
        )
    )
    return sliding_count(hits, previous or 0, now=now, current_start=current_start, window=rule.window) <= rule.limit


def sliding_count(current: int, previous: int, *, now: datetime, current_start: datetime, window: timedelta) -> float:
    """The hits in the `window` before `now`, estimated from two fixed windows' counts (hits of the
    previous window assumed evenly spread over it)."""
    return current + previous * previous_window_weight(now, current_start, window)


def previous_window_weight(now: datetime, current_start: datetime, window: timedelta) -> float:
    """The share of the previous fixed window that still lies within the sliding window."""
    return 1.0 - (now - current_start) / window


def canonical_address(email: str) -> str:
    """The address a per-address limit counts: lower-case, without a +tag (victim+1@, victim+2@
    … all reach one inbox), and without the dots Gmail ignores."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return email.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def purge_rate_limits(session: Session, *, before: datetime) -> int:
    return session.execute(delete(RateLimitHit).where(RateLimitHit.window_start < before)).rowcount
