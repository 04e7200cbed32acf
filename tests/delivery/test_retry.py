"""The retry policy: back-off grows, is jittered over its whole range and stays under its cap."""

from __future__ import annotations

import random
from datetime import timedelta

from course.delivery.retry import retry_delay


def test_retry_delay_grows_within_half_to_full_ceiling_and_the_cap() -> None:
    base, cap = 60.0, 3600.0
    for attempts in range(1, 15):
        ceiling = min(cap, base * 2 ** (attempts - 1))
        samples = [retry_delay(attempts, base_seconds=base, max_seconds=cap, rng=random.Random(seed)).total_seconds() for seed in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempts, min(samples), max(samples))
        assert max(samples) > 0.9 * ceiling and min(samples) < 0.6 * ceiling  # jittered over the whole range
    # Same random draw, more attempts: never shorter, and strictly longer until the cap.
    same_draw = [retry_delay(n, base_seconds=base, max_seconds=cap, rng=random.Random(7)) for n in range(1, 12)]
    assert all(a < b for a, b in zip(same_draw[:7], same_draw[1:7]))
    assert all(a <= b for a, b in zip(same_draw, same_draw[1:]))
    assert max(same_draw) <= timedelta(seconds=cap)
    assert retry_delay(0, base_seconds=base, max_seconds=cap, rng=random.Random(1)) <= timedelta(seconds=base)
