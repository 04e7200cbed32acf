"""`course bench --scenario throttled` short: 2 real Celery send workers and a dispatcher share one
provider limited to 50 messages a second through the gate in Redis; the sink (a real aiosmtpd
server) must never see more than the limit (+5 %) in any 1 s window. The full run (200/s, 4
workers) is `course bench --scenario throttled`; its figures are in docs/performance.md."""

from __future__ import annotations

import uuid

import pytest

from course.devtools.bench.config import BenchConfig
from course.devtools.bench.throttled import max_in_window, mean_rate, run_throttled_benchmark
from tests.support.services import PG_ADMIN_URL, SMOKE_REDIS_URL

# A Redis database of its own, as the other benchmark smoke tests use (the run flushes it).


def test_window_and_mean_are_counted_at_arrivals() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2]) == 4  # [0.5, 1.5) holds four, [0, 1) three
    assert max_in_window([0.0, 1.0, 2.0]) == 1  # a window is half-open
    assert mean_rate([0.0, 1.0, 2.0]) == 1.0
    assert mean_rate([5.0]) == 0.0


@pytest.mark.slow  # ~35 s, most of it starting Celery; the in-suite version is in tests/delivery/test_providers.py
def test_fifty_a_second_hold_across_worker_processes() -> None:
    config = BenchConfig(
        scenario="throttled", workers=2, admin_url=PG_ADMIN_URL, redis_url=SMOKE_REDIS_URL,
        database=f"course_bench_throttled_{uuid.uuid4().hex[:8]}", timeout_seconds=120,
    )  # fmt: skip
    report = run_throttled_benchmark(config, lambda phase, done, total: None, limit=50, messages=200)
    assert report["messages"] == 200
    assert report["max_in_any_1s_window"] <= 50 * 1.05, report
    assert report["mean_per_second"] <= 50 * 1.05, report
    assert report["seconds"] >= (200 - 1) / 50 * 0.95, report  # it was paced, not sent in a burst
