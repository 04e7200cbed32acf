"""`course bench --scenario import` at a tiny size (2,000 rows, 2 runs) on real PostgreSQL: the
report is complete and consistent (every row accounted for, the second import unchanged, wall
clock and CPU figures present) and the database is dropped. It never checks how fast anything
was: the figures come from `course bench`, not from tests."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text

from course.devtools.bench.config import BenchConfig
from course.devtools.bench.imports import import_table, run_import_benchmark
from tests.support.services import PG_ADMIN_URL, unavailable

N = 2_000


def test_the_import_benchmark_reports_every_row_and_its_figures() -> None:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL to run against
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    config = BenchConfig(scenario="import", subscribers=N, admin_url=PG_ADMIN_URL, database=f"course_bench_import_smoke_{uuid.uuid4().hex[:8]}")
    phases: list[str] = []
    report = run_import_benchmark(config, lambda phase, done, total: phases.append(phase), runs=2)
    first, again = report["counts"]["first import"], report["counts"]["same file again"]
    # write_listing: every 1000th line is no address, every 5000th repeats the line before it.
    assert first == {"accepted": N - 2, "updated": 0, "unchanged": 0, "rejected": 2, "duplicate": 0, "suppressed": 0}
    assert again["unchanged"] == first["accepted"] and again["accepted"] == 0 and again["rejected"] == 2
    assert len(report["samples"]) == 2 and report["runs"] == 2
    for label in ("first import", "same file again"):
        assert report["seconds"][label] > 0 and report["rows_per_second"][label] > 0
        assert report["cpu_seconds"][label]["python"] > 0 and report["cpu_seconds"][label]["postgres"] >= 0
    assert "run 2/2: same file again" in phases
    assert import_table(report).row_count == 2
    with admin.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": config.database}) == 0
    admin.dispose()
