"""The retry policy of the sender: how long a delivery waits after a transient failure.

Pure: the attempt count and the settings go in, a delay comes out; the random draw can be passed in.
A row is retried for a window of time after its first attempt (like an MTA's queue lifetime), not
for a number of attempts: an outage of hours must not turn a day's mail into `failed`.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def retry_delay(attempts: int, *, base_seconds: float, max_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: attempt n waits between half and all of base·2^(n-1)
    (capped), so a fleet of failed sends does not come back in lockstep."""
    ceiling = min(max_seconds, base_seconds * (2 ** max(attempts - 1, 0)))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


def next_attempt(
    attempts: int,
    *,
    now: datetime,
    first_attempt_at: datetime | None,
    window: timedelta,
    base_seconds: float,
    max_seconds: float,
    speed: float = 1.0,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after a transient failure, or None to give up: when the next try would
    fall more than `window` after the first attempt. `speed` turns wall-clock back-off into the
    clock's calendar time (the demo's fast clock); `window` is already in calendar time."""
    delay = retry_delay(attempts, base_seconds=base_seconds, max_seconds=max_seconds, rng=rng) * speed
    due = now + delay
    if due - (first_attempt_at or now) > window:
        return None
    return due
