"""`course bench --scenario admin` at a tiny size (600 subscribers, 2 runs) on real PostgreSQL: the
seeding writes what its docstring says, the counters it leaves are what the rows imply, every page
answered and has its figures. It never checks how fast anything was: the figures come from
`course bench`, not from tests."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from course.devtools.bench.admin import LESSONS, pages, run_admin_benchmark
from course.devtools.bench.config import BenchConfig
from course.devtools.bench.harness import drop_database
from tests.support.services import PG_ADMIN_URL, unavailable

N = 600


@pytest.fixture
def admin_config() -> BenchConfig:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL to run against
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    finally:
        admin.dispose()
    return BenchConfig(scenario="admin", subscribers=N, admin_url=PG_ADMIN_URL, keep_database=True,
                       database=f"course_bench_admin_smoke_{uuid.uuid4().hex[:8]}")


def test_the_admin_benchmark_seeds_what_it_says_and_times_every_page(admin_config: BenchConfig) -> None:
    phases: list[tuple[str, int, int]] = []
    try:
        report = run_admin_benchmark(admin_config, lambda *step: phases.append(step), runs=2)
        engine = create_engine(admin_config.database_url)
        with engine.connect() as connection:
            sums = dict(connection.execute(text("SELECT scope || '/' || key, sum(value) FROM counters GROUP BY 1")).all())
            implied = dict(connection.execute(text(
                "SELECT 'deliveries/' || state, count(*) FROM deliveries WHERE state IN ('sent', 'failed') GROUP BY state"
            )).all())  # fmt: skip
            events = dict(connection.execute(text("SELECT 'events/' || kind, count(*) FROM subscriber_events GROUP BY kind")).all())
        engine.dispose()
    finally:
        drop_database(admin_config)
    ids = range(1, N + 1)
    left = [n for n in ids if n % 20 == 0 or n % 50 == 1]
    pending = [n for n in ids if n % 33 == 2 and n not in left]
    confirmed = N - len(pending)
    rows = report["rows"]
    assert rows["subscribers"] == N and rows["enrollments"] == N
    assert rows["subscriber_events"] == N + confirmed + len(left)
    # Lessons 1-3 to every confirmed reader, 4 and 5 to those still reading (active or paused).
    reading = [n for n in ids if n not in left and n not in pending]
    assert rows["deliveries"] == 3 * confirmed + (LESSONS - 3) * len(reading)
    assert {key: int(value) for key, value in sums.items() if key.startswith("deliveries/")} == implied
    assert {key: int(value) for key, value in sums.items() if key.startswith("events/")} == events
    labels = [label for label, _ in pages(1)] + ["export start (first rows)"]
    assert list(report["pages"]) == labels
    for figures in report["pages"].values():
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert phases[-1][0] == "timing pages" and phases[-1][1] == phases[-1][2]
