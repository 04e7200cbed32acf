"""`course bench --scenario import`: a CSV of N subscribers (1,000,000 by default) imported into a
fresh PostgreSQL database exactly as `course subscribers import --mode confirmed --tag T` does it
(rows checked, staging table filled with COPY, one set-based merge, the per-row report written), timed
end to end; then the same file again, when every row is unchanged. A tenth of the rows carry
tags and a few are bad, duplicated or suppressed, so every branch of the merge does work."""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import sessionmaker

from course.devtools.bench.config import BenchConfig, BenchError

Progress = Callable[[str, int, int], None]
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "")


def write_listing(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("email", "name", "timezone", "tags", "created_at"))
        for number in range(rows):
            email = f"reader{number}@example.org" if number % 1000 != 999 else f"not an address {number}"
            if number % 5000 == 4999:
                email = f"reader{number - 1}@example.org"  # a duplicate
            tags = "bench;early" if number % 10 == 0 else ""
            writer.writerow((email, f"Reader {number % 97}", ZONES[number % len(ZONES)], tags, "2024-03-01"))


def run_import_benchmark(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    from course import schema
    from course.audience.imports import ImportOptions, run_import, start_import
    from course.db import make_engine
    from course.devtools.bench.harness import drop_database, recreate_database

    engine: Engine | None = None
    timings: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    try:
        progress("creating the database", 0, 1)
        recreate_database(config)
        engine = make_engine(config.database_url)
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with tempfile.TemporaryDirectory() as folder:
            listing = Path(folder) / "listing.csv"
            progress("writing the CSV", 0, 1)
            write_listing(listing, config.subscribers)
            options = ImportOptions(mode="confirmed", consent="bench", tag="imported")
            from datetime import datetime, timezone

            now = datetime.now(timezone.utc)
            for label in ("first import", "same file again"):
                progress(label, 0, listing.stat().st_size)
                started = time.perf_counter()
                with sessions.begin() as session:
                    record = start_import(session, filename="listing.csv", options=options, source="cli", actor="bench", admin_id=None, now=now)
                    counts[label] = run_import(
                        session, record, listing, options=options, secret="bench", now=now,
                        on_progress=lambda done, total, label=label: progress(label, done, total),
                    )  # fmt: skip
                timings[label] = time.perf_counter() - started
        with sessions.begin() as session:
            subscribers = session.scalar(select(func.count()).select_from(text("subscribers")))
            server_version = str(session.scalar(text("SHOW server_version")))
        if counts["same file again"]["accepted"] != 0:
            raise BenchError(f"the second import accepted rows: {counts['same file again']}")
        return {
            "scenario": "import", "rows": config.subscribers, "subscribers_after": subscribers,
            "seconds": {label: round(value, 2) for label, value in timings.items()},
            "rows_per_second": {label: round(config.subscribers / value) for label, value in timings.items()},
            "counts": counts, "postgres": server_version,
        }  # fmt: skip
    finally:
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            try:
                drop_database(config)
            except Exception:  # noqa: BLE001 - the report matters more than the clean-up
                pass


def import_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"CSV import of {report['rows']:,} rows (PostgreSQL {report['postgres']})")
    for column in ("run", "seconds", "rows/s", "accepted", "updated", "unchanged", "rejected", "duplicate", "suppressed"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for label, seconds in report["seconds"].items():
        outcome = report["counts"][label]
        table.add_row(
            label, f"{seconds:.1f}", f"{report['rows_per_second'][label]:,}",
            *(f"{outcome.get(key, 0):,}" for key in ("accepted", "updated", "unchanged", "rejected", "duplicate", "suppressed")),
        )  # fmt: skip
    return table
