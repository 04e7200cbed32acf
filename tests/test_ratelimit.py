"""course.ratelimit: sliding windows over the database counters (on PostgreSQL and SQLite), and the
canonical address the per-address limit counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session, sessionmaker

from course.db import make_engine
from course.ratelimit import RateLimit, canonical_address, sliding_count, take_rate_limit

HOUR = timedelta(hours=1)
TOP = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("Victim@Example.ORG", "victim@example.org"),
        ("victim+1@example.org", "victim@example.org"),
        ("victim+a+b@example.org", "victim@example.org"),
        ("v.i.c.t.i.m+x@GoogleMail.com", "victim@gmail.com"),
        ("first.last@example.org", "first.last@example.org"),  # dots matter outside Gmail
        ("+tag@example.org", "+tag@example.org"),  # nothing before the +: leave it
    ],
)
def test_canonical_address(address: str, canonical: str) -> None:
    assert canonical_address(address) == canonical


def test_sliding_count_weighs_the_previous_window() -> None:
    assert sliding_count(1, 10, now=TOP, current_start=TOP, window=HOUR) == 11
    assert sliding_count(1, 10, now=TOP + HOUR / 2, current_start=TOP, window=HOUR) == 6
    assert sliding_count(1, 10, now=TOP + HOUR, current_start=TOP, window=HOUR) == 1


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(database_url))


def hits(sessions: sessionmaker[Session], rule: RateLimit, at: datetime, times: int) -> list[bool]:
    results = []
    for _ in range(times):
        with sessions.begin() as session:
            results.append(take_rate_limit(session, rule, "k" * 64, now=at))
    return results


def test_no_fresh_limit_at_the_top_of_the_hour(sessions: sessionmaker[Session]) -> None:
    rule = RateLimit("test", 3, HOUR)
    assert hits(sessions, rule, TOP - timedelta(seconds=30), 3) == [True] * 3
    # Fixed windows allowed three more at 09:00:30; the sliding window does not.
    assert hits(sessions, rule, TOP + timedelta(seconds=30), 3) == [False] * 3
    # Refused attempts count too: 45 minutes on, the three refused ones still hold the limit.
    assert hits(sessions, rule, TOP + timedelta(minutes=45), 1) == [False]
    # Two windows on, the old hits are gone.
    assert hits(sessions, rule, TOP + 2 * HOUR, 3) == [True] * 3


def test_keys_and_scopes_are_counted_apart(sessions: sessionmaker[Session]) -> None:
    one, other = RateLimit("one", 1, HOUR), RateLimit("other", 1, HOUR)
    with sessions.begin() as session:
        assert take_rate_limit(session, one, "a" * 64, now=TOP)
        assert take_rate_limit(session, one, "b" * 64, now=TOP)
        assert take_rate_limit(session, other, "a" * 64, now=TOP)
        assert not take_rate_limit(session, one, "a" * 64, now=TOP)
