"""`course bench --scenario audience` at a tiny size (2,000 subscribers, 2 runs) on real PostgreSQL:
the report is complete and consistent, counts exact, timings present and positive. It never checks
how fast anything was: the figures come from `course bench`, not from tests."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from course.devtools.bench.audience import BASELINE_SQL, run_audience_benchmark, shapes
from course.devtools.bench.config import BenchConfig
from course.devtools.bench.harness import drop_database
from tests.support.services import PG_ADMIN_URL, unavailable

N = 2_000


@pytest.fixture
def audience_config() -> BenchConfig:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL to run against
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    finally:
        admin.dispose()
    return BenchConfig(scenario="audience", subscribers=N, admin_url=PG_ADMIN_URL,
                       database=f"course_bench_audience_smoke_{uuid.uuid4().hex[:8]}")


def _databases_named(name: str) -> int:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            return int(connection.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}))
    finally:
        admin.dispose()


def test_the_audience_benchmark_reports_exact_counts_and_every_timing(audience_config: BenchConfig) -> None:
    phases: list[tuple[str, int, int]] = []
    try:
        report = run_audience_benchmark(audience_config, lambda *step: phases.append(step), runs=2)
        left = _databases_named(audience_config.database)
    finally:
        drop_database(audience_config)
    assert left == 0, "dropped once the report is made"
    assert report["scenario"] == "audience" and report["subscribers"] == N and report["runs"] == 2
    assert report["seed_seconds"] > 0
    active = [n for n in range(1, N + 1) if n % 10]
    assert report["baseline"]["sql"] == BASELINE_SQL and report["baseline"]["count"] == len(active) == 1_800
    assert report["shapes"] == {label: report["shapes"][label] for label, _ in shapes()}  # every shape, in order
    assert {label: shape["count"] for label, shape in report["shapes"].items()} == {
        "everyone": 1_800,
        "tag": sum(1 for n in active if n % 3 == 0),
        "tag minus excluded": sum(1 for n in active if n % 3 == 0 and n % 7),
        "all tags minus excluded": sum(1 for n in active if n % 7),
    }
    for figures in [report["baseline"], *report["shapes"].values()]:
        assert len(figures["runs_ms"]) == 2 and all(ms > 0 for ms in figures["runs_ms"])
        assert figures["best_ms"] == min(figures["runs_ms"]) and figures["best_ms"] <= figures["median_ms"] <= max(figures["runs_ms"])
    for shape in report["shapes"].values():
        assert shape["ratio_to_baseline"] == pytest.approx(shape["median_ms"] / report["baseline"]["median_ms"], abs=0.01)
    # The progress bar saw the seeding through to N and every timed run.
    assert ("seeding subscribers and tags", N, N) in phases
    assert phases[-1] == ("timing counts", 3 * (1 + len(shapes())), 3 * (1 + len(shapes())))


def test_course_bench_runs_the_audience_scenario_and_keeps_its_database_when_asked(audience_config: BenchConfig,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from course.cli.main import app

    monkeypatch.setenv("COURSE_BENCH_POSTGRES_URL", PG_ADMIN_URL)
    try:
        result = CliRunner().invoke(app, ["bench", "--scenario", "audience", "--subscribers", "500", "--runs", "1",
                                          "--database", audience_config.database, "--keep-database", "--json"])
        left = _databases_named(audience_config.database)
    finally:
        drop_database(audience_config)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["subscribers"] == 500 and report["baseline"]["count"] == 450
    assert left == 1, "--keep-database leaves it in place"
