"""`course bench --scenario import`: a CSV of N subscribers (1,000,000 by default) imported into a
fresh PostgreSQL database exactly as `course subscribers import --mode confirmed --tag T` does it
(rows checked, staging table filled with COPY, one set-based merge, the per-row report written), timed
end to end; then the same file again, when every row is unchanged. A tenth of the rows carry
tags and a few are bad, duplicated or suppressed, so every branch of the merge does work."""

from __future__ import annotations

import csv
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from datetime import datetime, timezone
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


def run_import_benchmark(config: BenchConfig, progress: Progress, *, runs: int = 1) -> dict[str, Any]:
    """`runs` times: a fresh database, the file imported, the same file again. Reports the median
    of each (wall clock, and the CPU seconds of this process and of its PostgreSQL backend, which a
    machine shared with other work changes less than the wall clock)."""
    from course.devtools.bench.harness import release_database

    samples: list[dict[str, dict[str, float]]] = []
    counts: dict[str, dict[str, int]] = {}
    server_version = ""
    try:
        with tempfile.TemporaryDirectory() as folder:
            listing = Path(folder) / "listing.csv"
            progress("writing the CSV", 0, 1)
            write_listing(listing, config.subscribers)
            for run in range(runs):
                sample, counts, server_version = _one_run(config, listing, progress, f"run {run + 1}/{runs}: ")
                samples.append(sample)
    finally:
        release_database(config)
    labels = ("first import", "same file again")
    median = {label: {key: statistics.median(s[label][key] for s in samples) for key in samples[0][label]} for label in labels}
    return {
        "scenario": "import", "rows": config.subscribers, "runs": runs,
        "seconds": {label: round(median[label]["wall"], 2) for label in labels},
        "cpu_seconds": {
            label: {"python": round(median[label]["python"], 2), "postgres": round(median[label]["postgres"], 2)} for label in labels
        },
        "rows_per_second": {label: round(config.subscribers / median[label]["wall"]) for label in labels},
        "samples": samples, "counts": counts, "postgres": server_version, "load_average": os.getloadavg(),
    }  # fmt: skip


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process on this machine (PostgreSQL's backend), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one_run(
    config: BenchConfig, listing: Path, progress: Progress, prefix: str
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]], str]:
    from course import schema
    from course.audience.imports import ImportOptions, run_import, start_import
    from course.db import make_engine
    from course.devtools.bench.harness import recreate_database

    progress(prefix + "creating the database", 0, 1)
    recreate_database(config)
    engine: Engine = make_engine(config.database_url)
    sample: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    try:
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        options = ImportOptions(mode="confirmed", consent="bench", tag="imported")
        now = datetime.now(timezone.utc)
        for label in ("first import", "same file again"):
            progress(prefix + label, 0, listing.stat().st_size)
            with sessions.begin() as session:
                backend = int(session.scalar(text("SELECT pg_backend_pid()")))
                started, own, postgres = time.perf_counter(), _own_cpu_seconds(), _process_cpu_seconds(backend)
                record = start_import(session, filename="listing.csv", options=options, source="cli", actor="bench", admin_id=None, now=now)
                counts[label] = run_import(
                    session, record, listing, options=options, secret="bench", now=now,
                    on_progress=lambda done, total, label=label: progress(prefix + label, done, total),
                )  # fmt: skip
            # After the commit: the wall clock includes it; the backend's CPU is read once it is done.
            sample[label] = {
                "wall": time.perf_counter() - started, "python": _own_cpu_seconds() - own,
                "postgres": _process_cpu_seconds(backend) - postgres,
            }  # fmt: skip
        with sessions.begin() as session:
            server_version = str(session.scalar(text("SHOW server_version")))
            subscribers = session.scalar(select(func.count()).select_from(text("subscribers")))
    finally:
        engine.dispose()
    if counts["same file again"]["accepted"] != 0:
        raise BenchError(f"the second import accepted rows: {counts['same file again']}")
    if subscribers != counts["first import"]["accepted"]:
        raise BenchError(f"{subscribers:,} subscribers after an import that accepted {counts['first import']['accepted']:,}")
    return sample, counts, server_version


def import_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    load = ", ".join(f"{value:.1f}" for value in report.get("load_average", ()))
    table = Table(
        title=f"CSV import of {report['rows']:,} rows, median of {report.get('runs', 1)} (PostgreSQL {report['postgres']}; "
        f"load average at the end {load})"
    )  # fmt: skip
    columns = ("run", "seconds", "rows/s", "CPU s (Python)", "CPU s (PostgreSQL)", "accepted", "updated", "unchanged",
               "rejected", "duplicate", "suppressed")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if column != "run" else "left")
    for label, seconds in report["seconds"].items():
        outcome = report["counts"][label]
        cpu = report.get("cpu_seconds", {}).get(label, {})
        table.add_row(
            label, f"{seconds:.1f}", f"{report['rows_per_second'][label]:,}",
            f"{cpu.get('python', 0):.1f}", f"{cpu.get('postgres', 0):.1f}",
            *(f"{outcome.get(key, 0):,}" for key in ("accepted", "updated", "unchanged", "rejected", "duplicate", "suppressed")),
        )  # fmt: skip
    return table
