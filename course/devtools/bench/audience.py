"""`course bench --scenario audience`: count_audience at N subscribers (default 1,000,000), against a
plain count of the active subscribers timed the same way in the same process.

One run:
1. Recreates a PostgreSQL database of its own (course_bench; dropped after the report unless
   --keep-database), as the pipeline scenarios do (harness.recreate_database), and migrates it.
2. Seeds N subscribers (every tenth unsubscribed) and their tags (id % 3 = 0: bakers, else readers;
   id % 7 = 0: lapsed too) with INSERT … SELECT over generate_series, in slices so progress can be
   shown, then VACUUM ANALYZE: the steady state autovacuum keeps (statistics, and a visibility map
   that lets the tag index answer on its own).
3. Times, in rounds, count_audience for each audience shape and the baseline
   (`SELECT count(*) FROM subscribers WHERE status = 'active'`): one untimed warm-up round, then
   `runs` rounds, each timing every shape once, so a burst of load on a shared machine falls on
   all of them alike. Each count is checked against the exact count the seeding implies.
4. Reports median and best in ms, the count, and each shape's median as a ratio to the baseline's.

Nothing here is a pass/fail bound: the figures are for docs/performance.md and comparisons."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.audience import Audience, build_audience, count_audience
from course.devtools.bench.config import BenchConfig, BenchError

Progress = Callable[[str, int, int], None]  # phase, done, total

BASELINE = "baseline: count(*) of active subscribers"
BASELINE_SQL = "SELECT count(*) FROM subscribers WHERE status = 'active'"
SEED_SLICE = 100_000


def shapes() -> list[tuple[str, Audience]]:
    """The audience shapes measured, lightest first."""
    return [
        ("everyone", Audience()),
        ("tag", build_audience(tags_any="bakers")),
        ("tag minus excluded", build_audience(tags_any="bakers", exclude_tags="lapsed")),
        # Two tags that together cover everybody, minus a tag: the heaviest shape.
        ("all tags minus excluded", build_audience(tags_any="bakers readers", exclude_tags="lapsed")),
    ]


def expected_counts(n: int) -> dict[str, int]:
    """What each shape must count once `seed` has written n subscribers (ids 1..n)."""
    active = [i for i in range(1, n + 1) if i % 10]
    return {
        BASELINE: len(active),
        "everyone": len(active),
        "tag": sum(1 for i in active if i % 3 == 0),
        "tag minus excluded": sum(1 for i in active if i % 3 == 0 and i % 7),
        "all tags minus excluded": sum(1 for i in active if i % 7),
    }


def seed(session: Session, n: int, progress: Progress) -> None:
    """n subscribers, every tenth unsubscribed, and their tags: set-based, a slice at a time."""
    done = 0
    progress("seeding subscribers and tags", 0, n)
    while done < n:
        first, last = done + 1, min(done + SEED_SLICE, n)
        session.execute(
            text(
                "INSERT INTO subscribers (email, name, timezone, status, created_at) "
                "SELECT 'r' || n || '@example.org', '', 'UTC', "
                "CASE WHEN n % 10 = 0 THEN 'unsubscribed' ELSE 'active' END, now() "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n"
            ),
            {"first": first, "last": last},
        )
        session.execute(
            text(
                "INSERT INTO subscriber_tags (subscriber_id, tag) "
                "SELECT id, CASE WHEN id % 3 = 0 THEN 'bakers' ELSE 'readers' END FROM subscribers "
                "WHERE id BETWEEN :first AND :last "
                "UNION ALL SELECT id, 'lapsed' FROM subscribers WHERE id BETWEEN :first AND :last AND id % 7 = 0"
            ),
            {"first": first, "last": last},
        )
        done = last
        progress("seeding subscribers and tags", done, n)
    ids = session.execute(text("SELECT min(id), max(id), count(*) FROM subscribers")).one()
    if tuple(ids) != (1, n, n):
        raise BenchError(f"seeding expected subscriber ids 1..{n}, got min/max/count {tuple(ids)}: is the database fresh?")


def _vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE subscribers"))
        connection.execute(text("VACUUM ANALYZE subscriber_tags"))


def time_shapes(session: Session, runs: int, progress: Progress) -> dict[str, dict[str, Any]]:
    """Seconds of every run and the count, for the baseline and each shape, timed in rounds."""
    measured: list[tuple[str, Callable[[], int]]] = [(BASELINE, lambda: int(session.scalar(text(BASELINE_SQL)) or 0))]
    for label, audience in shapes():
        measured.append((label, lambda audience=audience: count_audience(session, audience)))
    results: dict[str, dict[str, Any]] = {label: {"seconds": [], "count": None} for label, _ in measured}
    total = (runs + 1) * len(measured)
    done = 0
    for round_number in range(runs + 1):  # round 0 warms the caches and is not kept
        for label, count in measured:
            started = time.perf_counter()
            value = count()
            elapsed = time.perf_counter() - started
            if round_number:
                results[label]["seconds"].append(elapsed)
            if results[label]["count"] not in (None, value):
                raise BenchError(f"{label}: the count changed between runs ({results[label]['count']} then {value})")
            results[label]["count"] = value
            done += 1
            progress("timing counts" if round_number else "warm-up round", done, total)
    return results


def build_audience_report(config: BenchConfig, results: dict[str, dict[str, Any]], *, runs: int,
                          seed_seconds: float, server_version: str) -> dict[str, Any]:
    def figures(label: str) -> dict[str, Any]:
        seconds = results[label]["seconds"]
        return {"count": results[label]["count"], "median_ms": round(statistics.median(seconds) * 1000, 2),
                "best_ms": round(min(seconds) * 1000, 2), "runs_ms": [round(s * 1000, 2) for s in seconds]}

    baseline = figures(BASELINE)
    report_shapes = {}
    for label, _ in shapes():
        shape = figures(label)
        shape["ratio_to_baseline"] = round(shape["median_ms"] / baseline["median_ms"], 2) if baseline["median_ms"] else None
        report_shapes[label] = shape
    return {
        "scenario": "audience",
        "subscribers": config.subscribers,
        "runs": runs,
        "postgres": server_version,
        "seed_seconds": round(seed_seconds, 2),
        "baseline": {"sql": BASELINE_SQL, **baseline},
        "shapes": report_shapes,
    }


def run_audience_benchmark(config: BenchConfig, progress: Progress, *, runs: int = 7) -> dict[str, Any]:
    from course import schema
    from course.db import make_engine
    from course.devtools.bench.harness import recreate_database, release_database

    if runs < 1:
        raise BenchError("runs must be at least 1")
    engine: Engine | None = None
    try:
        progress("creating the database", 0, 1)
        recreate_database(config)
        engine = make_engine(config.database_url)
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        seed_started = time.perf_counter()
        with sessions.begin() as session:
            seed(session, config.subscribers, progress)
        progress("VACUUM ANALYZE", 0, 1)
        _vacuum(engine)
        seed_seconds = time.perf_counter() - seed_started
        with sessions.begin() as session:
            server_version = str(session.scalar(text("SHOW server_version")))
            results = time_shapes(session, runs, progress)
        expected = expected_counts(config.subscribers)
        wrong = {label: (result["count"], expected[label]) for label, result in results.items()
                 if result["count"] != expected[label]}
        if wrong:
            raise BenchError(f"counts differ from what the seeding implies (got, expected): {wrong}")
        return build_audience_report(config, results, runs=runs, seed_seconds=seed_seconds, server_version=server_version)
    finally:
        release_database(config, engine)


def audience_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"course bench: audience, {report['subscribers']:,} subscribers, {report['runs']} runs "
                        f"each (after a warm-up), PostgreSQL {report['postgres']}; seeding {report['seed_seconds']:.1f} s")
    for column, justify in [("shape", "left"), ("count", "right"), ("median ms", "right"), ("best ms", "right"),
                            ("ratio to baseline", "right")]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    base = report["baseline"]
    table.add_row("baseline: count(*) WHERE status='active'", f"{base['count']:,}", f"{base['median_ms']:.1f}",
                  f"{base['best_ms']:.1f}", "1.00")
    for label, shape in report["shapes"].items():
        table.add_row(label, f"{shape['count']:,}", f"{shape['median_ms']:.1f}", f"{shape['best_ms']:.1f}",
                      f"{shape['ratio_to_baseline']:.2f}")
    return table
