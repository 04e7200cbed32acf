"""The benchmark's machinery at a tiny size: real PostgreSQL, Redis, Celery worker processes and
smtp-sink, 200 recipients, one worker. It checks the report is complete and consistent, never how
fast anything was: figures come from `course bench`, not from tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from course.devtools.bench.harness import SMTP_SINK, SMTP_SOURCE, BenchConfig, drop_database, run_benchmark
from tests.support.services import PG_ADMIN_URL, SMOKE_REDIS_URL, unavailable

# A Redis database of its own, apart from the tests' /15 and a benchmark running on /14.


@pytest.fixture
def smoke_config() -> BenchConfig:
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not Path(tool).exists():
            unavailable(f"{tool} not installed (scripts/services.sh installs Postfix's tools)")
    try:
        redis.Redis.from_url(SMOKE_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at {SMOKE_REDIS_URL}: {exc}")
    return BenchConfig(
        subscribers=200,
        workers=1,
        admin_url=PG_ADMIN_URL,
        database=f"course_bench_smoke_{uuid.uuid4().hex[:8]}",
        redis_url=SMOKE_REDIS_URL,
        due_margin_seconds=1.0,
        timeout_seconds=60,
    )


def _databases_named(name: str) -> int:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            return int(connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}))
    finally:
        admin.dispose()


@pytest.mark.parametrize("scenario", ["lesson-day", "campaign"])
def test_the_benchmark_reports_every_figure_consistently(smoke_config: BenchConfig, scenario: str) -> None:
    smoke_config.scenario = scenario
    smoke_config.keep_database = scenario == "campaign"  # one of each: dropped after the run, and kept
    try:
        report = run_benchmark(smoke_config)
        left = _databases_named(smoke_config.database)
    finally:
        drop_database(smoke_config)
    assert left == (1 if smoke_config.keep_database else 0), "dropped once the report is made, unless asked to keep it"
    assert report["emails_due"] == report["emails_sent"] == report["sink_accepted"] == 200
    assert report["states"] == {"sent": 200}
    assert report["workers"] == 1 and report["smtp_connections"] == 1
    assert report["message_bytes"] > 1000
    assert report["end_to_end"]["emails_per_second"] > 0
    late = report["lateness_seconds"]
    assert 0 <= late["p50"] <= late["p99"] <= late["max"] <= report["end_to_end"]["seconds"] + 1
    assert report["dispatch"]["claimed"] == 200 and report["dispatch"]["rows_per_second"] > 0
    assert report["tasks"]["course.send"] >= 1
    assert report["peak_rss_mib"]["max_worker"] > 10 and report["peak_rss_mib"]["dispatcher"] > 10
    database = report["database"]
    assert 0 < database["statements"] and database["statements_per_email"] == pytest.approx(database["statements"] / 200, abs=1e-3)
    assert report["redis"]["commands"] > 0
    ceiling = report["ceiling"]
    assert ceiling["messages"] == 200 and ceiling["connections"] == 1 and ceiling["message_bytes"] == report["message_bytes"]
    assert ceiling["rate"] > 0 and report["ratio_to_ceiling"] > 0
    if scenario == "campaign":
        assert report["fan_out"]["rows"] == 200 and report["fan_out"]["rows_per_second"] > 0
        assert report["campaign_status"] == "done"
    else:
        assert "fan_out" not in report
