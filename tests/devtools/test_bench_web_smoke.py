"""`course bench --scenario web` at a tiny size: real PostgreSQL, the app and the bare endpoint served
by real uvicorn processes, real wrk. It checks the report is complete and consistent (every endpoint
measured, no 5xx, the statement counters wired to the app's processes), never how fast anything was."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from course.devtools.bench.web import ENDPOINTS, WRK, WebBenchConfig, parse_wrk, run_web_benchmark
from course.settings import Settings
from tests.support.services import PG_ADMIN_URL, unavailable


def test_parse_wrk_reads_the_line_our_script_writes() -> None:
    output = "Running 1s test\n  2 threads\nBENCH requests=10 duration_us=1000000 p50_us=900 p99_us=2000 max_us=2500 c4=1 c5=0 socket_errors=0\n"
    assert parse_wrk(output) == {"requests": 10, "duration_us": 1_000_000, "p50_us": 900, "p99_us": 2000,
                                 "max_us": 2500, "c4": 1, "c5": 0, "socket_errors": 0}


def test_the_web_benchmark_reports_every_endpoint() -> None:
    if not Path(WRK).exists():
        unavailable(f"{WRK} not installed (scripts/services.sh installs it)")
    config = WebBenchConfig(
        admin_url=PG_ADMIN_URL, database=f"course_bench_web_{uuid.uuid4().hex[:8]}", seconds=1, connections=(2,),
        readers=30, warmup_seconds=1,
    )
    phases: list[str] = []
    report = run_web_benchmark(config, lambda phase, done, total: phases.append(phase))
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            left = connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": config.database})
    finally:
        admin.dispose()
    assert left == 0, "the benchmark's database is dropped after the report"
    assert phases[0] == "seeding" and phases[-1] == "done"
    runs = {run["endpoint"]: run for run in report["runs"]}
    assert set(runs) == set(ENDPOINTS)
    for name, run in runs.items():
        assert run["requests"] > 0, name
        assert run["status_5xx"] == 0 and run["status_4xx"] == 0 and run["socket_errors"] == 0, (name, run)
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], name
    assert runs["bare"]["ratio_to_bare"] == 1.0
    # The counters are the app processes' own: a static file runs no SQL, a signup runs some.
    assert runs["bare"]["statements_per_request"] == 0 and runs["static"]["statements_per_request"] == 0
    assert runs["course"]["commits_per_request"] < 0.5  # from the catalogue cache
    for name in ("api-signup", "form-signup", "unsubscribe", "preferences"):
        assert runs[name]["statements_per_request"] >= 1, name
        # Counted by the server and not by wrk: requests still in flight when wrk stops (at most
        # one per connection, at the warm-up's end and the run's), and each web process's check of
        # the catalogue's version (one statement at most once per COURSE_CATALOGUE_RECHECK_SECONDS
        # while it serves: a run of one second under load may hold two per process).
        run = runs[name]
        rechecks = config.web_workers * (math.ceil(config.seconds / Settings.model_fields["catalogue_recheck_seconds"].default) + 1)
        slack = (2 * config.connections[0] + rechecks) / run["requests"] + 0.01
        if name == "preferences":
            # A page that only reads: its two statements in autocommit, no COMMIT.
            assert run["statements_per_request"] == pytest.approx(2.0, abs=2 * slack), run
        else:
            # A signup, or a one-click unsubscribe from one course: the whole database work in
            # one statement in autocommit (no BEGIN, no COMMIT).
            assert run["statements_per_request"] == pytest.approx(1.0, abs=slack), run
        assert run["commits_per_request"] == 0, run
    assert report["load_average"] and report["cpus"] >= 1
    # Every endpoint was warmed up once, unmeasured, before its run.
    assert set(report["warmup_max_ms"]) == set(ENDPOINTS) and all(ms > 0 for ms in report["warmup_max_ms"].values())
