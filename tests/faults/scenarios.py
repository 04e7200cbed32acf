"""The faults of issue #11, each a function that breaks one part of a running FaultStack at the
moment a share of the mail has gone out. Used by tests/faults/test_faults.py (the CI-sized run)
and by `make soak` (tests/faults/soak.py), which also prints the table of the issue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.fault_stack import FaultStack


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str  # as in the table
    inject: Callable[[FaultStack], None]
    at_share: float = 0.2  # inject once this share of the rows has reached the server
    before_start: Callable[[FaultStack], None] | None = None  # set up before the workers start
    beats: int = 1
    redis_persistent: bool = False  # the stack's Redis keeps an append-only file (the journal is durable)


def _pg_restart(mode: str) -> Callable[[FaultStack], None]:
    return lambda stack: stack.postgres.restart(mode)


def _pg_down(seconds: float) -> Callable[[FaultStack], None]:
    def inject(stack: FaultStack) -> None:
        stack.postgres.stop("fast")
        time.sleep(seconds)
        stack.postgres.start()

    return inject


def _kill_worker(stack: FaultStack) -> None:
    stack.kill(stack.workers[0])


def _kill_beat(stack: FaultStack) -> None:
    stack.kill(stack.beats[0])
    time.sleep(2)
    stack.start_beat()


def _kill_redis_and_worker(stack: FaultStack) -> None:
    """Issue #24's first double fault: Redis and one worker SIGKILLed together, mid-task; Redis comes
    back (with its append-only file, or empty)."""
    stack.redis.stop()  # SIGKILL
    stack.kill(stack.workers[0])
    time.sleep(1)
    stack.redis.start()


def _kill_redis_and_stop_postgres(seconds: float) -> Callable[[FaultStack], None]:
    """The second: Redis SIGKILLed and PostgreSQL stopped past the lease, mid-task."""

    def inject(stack: FaultStack) -> None:
        stack.redis.stop()
        stack.postgres.stop("fast")
        stack.redis.start()
        time.sleep(seconds)
        stack.postgres.start()

    return inject


def _nothing(stack: FaultStack) -> None:
    return None


SCENARIOS = [
    Scenario("pg-fast-restart", "PostgreSQL fast restart", _pg_restart("fast")),
    Scenario("pg-immediate-restart", "PostgreSQL immediate restart", _pg_restart("immediate")),
    Scenario("pg-down-10s", "PostgreSQL down 10 s", _pg_down(10)),
    Scenario("worker-sigkill", "SIGKILL of one worker (parent and children)", _kill_worker),
    Scenario(
        "smtp-timeout-after-data",
        "SMTP time-out after DATA (server had queued it), 3 times",
        _nothing,
        at_share=0.0,
        before_start=lambda stack: stack.smtp.hang_after_data(3, seconds=6),
    ),
    Scenario(
        "smtp-slow-replies",
        "every SMTP reply delayed 2.5 s (for 40 s)",
        _nothing,
        at_share=0.0,
        before_start=lambda stack: stack.smtp.delay_replies(2.5, for_seconds=40),
    ),
    Scenario(
        "smtp-421-outage",
        "421 for 30 s",
        _nothing,
        at_share=0.0,
        before_start=lambda stack: stack.smtp.refuse_for(30, 421),
    ),
    Scenario(
        "smtp-421-180s",
        "421 for 180 s",
        _nothing,
        at_share=0.0,
        before_start=lambda stack: stack.smtp.refuse_for(180, 421),
    ),
    Scenario("redis-restart", "Redis restart", lambda stack: stack.redis.restart()),
    Scenario("beat-sigkill", "beat kill -9 (and a new one)", _kill_beat),
    Scenario("two-beats", "two beats", _nothing, beats=2),
    *(
        Scenario(f"redis-and-worker-sigkill-{kind}", f"Redis ({kind}) and one worker SIGKILLed together", _kill_redis_and_worker, redis_persistent=persistent)
        for kind, persistent in (("aof", True), ("volatile", False))
    ),
    *(
        Scenario(
            f"redis-sigkill-pg-down-30s-{kind}", f"Redis ({kind}) SIGKILLed and PostgreSQL stopped 30 s",
            _kill_redis_and_stop_postgres(30), redis_persistent=persistent,
        )  # fmt: skip
        for kind, persistent in (("aof", True), ("volatile", False))
    ),
]

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def run_scenario(stack: FaultStack, scenario: Scenario, *, workers: int = 2, concurrency: int = 2, timeout: float = 300):  # type: ignore[no-untyped-def]
    if scenario.before_start is not None:
        scenario.before_start(stack)
    stack.start_workers(workers, concurrency)
    for _ in range(scenario.beats):
        stack.start_beat()
    if scenario.at_share > 0:
        stack.wait_until_received(max(1, int(stack.rows * scenario.at_share)))
    scenario.inject(stack)
    return stack.finish(timeout=timeout)
