"""`course bench --scenario mixed` at a tiny size: real PostgreSQL, Redis, Celery send workers and
dispatcher, smtp-sink and the web app on uvicorn, a 40-signup burst while a 200-email campaign
sends. It checks the report is complete and consistent (every signup answered and confirmed, every
mail at the sink, the latencies ordered), never how fast anything was."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from course.devtools.bench.config import SMTP_SINK
from course.devtools.bench.mixed import (
    MixedBenchConfig,
    _read_answer,
    _signup_request,
    mixed_report_table,
    run_mixed_benchmark,
)
from tests.support.services import PG_ADMIN_URL, SMOKE_REDIS_URL, unavailable

# A Redis database of its own, as the other benchmark smoke tests use (the run flushes it).


def test_an_answer_is_read_by_its_content_length() -> None:
    async def read(raw: bytes) -> tuple[int, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_answer(reader)

    assert asyncio.run(read(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")) == (202, True)
    assert asyncio.run(read(b"HTTP/1.1 429 Too Many\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")) == (429, False)


def test_the_mixed_benchmark_reports_every_figure_consistently() -> None:
    if not Path(SMTP_SINK).exists():
        unavailable(f"{SMTP_SINK} not installed (scripts/services.sh installs Postfix's tools)")
    try:
        redis.Redis.from_url(SMOKE_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at {SMOKE_REDIS_URL}: {exc}")
    config = MixedBenchConfig(
        admin_url=PG_ADMIN_URL, database=f"course_bench_mixed_{uuid.uuid4().hex[:8]}", redis_url=SMOKE_REDIS_URL,
        subscribers=200, signups=40, burst_seconds=2, workers=1, web_workers=1, connections=4, timeout_seconds=120,
    )
    phases: list[str] = []
    report = run_mixed_benchmark(config, lambda phase, done, total: phases.append(phase))
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            left = connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": config.database})
    finally:
        admin.dispose()
    assert left == 0, "the benchmark's database is dropped after the report"
    assert phases[0] == "seeding" and "signup burst" in phases and phases[-1] == "sending"
    burst = report["burst"]
    assert burst["sent"] == burst["accepted_202"] == 40
    assert burst["other_status"] == {} and burst["connection_errors"] == 0
    assert 0 < burst["latency_ms"]["p50"] <= burst["latency_ms"]["p99"] <= burst["latency_ms"]["max"]
    assert report["campaign_rows"] == 200 and report["expected"] == 240 and report["sink_accepted"] == 240
    confirmations = report["confirmation_seconds"]
    assert confirmations["signups"] == confirmations["sent"] == 40
    assert 0 < confirmations["p50"] <= confirmations["p99"] <= confirmations["max"]
    assert 0 <= report["signup_queue_seconds"]["p50"] <= confirmations["p50"]
    assert report["campaign"]["sent"] == 200 and report["campaign"]["emails_per_second"] > 0
    assert mixed_report_table(report).row_count == 11


@pytest.mark.parametrize("size", [1, 3])
def test_each_signup_is_a_new_reader_from_a_client_address_of_its_own(size: int) -> None:
    request = _signup_request(size, "t").decode()
    assert request.startswith("POST /api/subscriptions HTTP/1.1\r\n")
    assert f"X-Forwarded-For: 10.0.0.{size}\r\n" in request and f'"burst-t-{size}@example.org"' in request
    head, body = request.split("\r\n\r\n", 1)
    assert f"Content-Length: {len(body.encode())}" in head
