"""The retry policy of the sender: how long a delivery waits after a transient failure.

Pure: the attempt count and the settings go in, a delay comes out; the random draw can be passed in.
"""

from __future__ import annotations

import random
from datetime import timedelta


def retry_delay(attempts: int, *, base_seconds: float, max_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: attempt n waits between half and all of base·2^(n-1)
    (capped), so a fleet of failed sends does not come back in lockstep."""
    ceiling = min(max_seconds, base_seconds * (2 ** max(attempts - 1, 0)))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))
