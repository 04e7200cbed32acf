"""`course bench`: the Typer command (registered by course/cli/main.py) that builds a BenchConfig from
its options and the environment, shows the run's progress, and prints the report."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from course.devtools.bench.audience import audience_table, run_audience_benchmark
from course.devtools.bench.config import SCENARIOS, BenchConfig, BenchError
from course.devtools.bench.harness import run_benchmark
from course.devtools.bench.report import report_table

def bench_command(
    scenario: Annotated[str, typer.Option("--scenario", help="lesson-day, campaign or audience")] = "lesson-day",
    subscribers: Annotated[
        int | None, typer.Option("--subscribers", min=1, help="recipients (default 100,000; audience: 1,000,000)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="send worker processes (default: one per core)")] = 0,
    pool: Annotated[str, typer.Option("--pool", help="solo, prefork or threads")] = "solo",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="per worker (prefork, threads)")] = 1,
    database: Annotated[str, typer.Option("--database", help="PostgreSQL database to recreate")] = "course_bench",
    keep_database: Annotated[
        bool, typer.Option("--keep-database", help="leave the database in place after the run")
    ] = False,
    runs: Annotated[int, typer.Option("--runs", min=1, help="audience: timed runs of each shape")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Measure the sending pipeline on real parts against smtp-source's ceiling on this machine, or
    (--scenario audience) the audience count against a plain count(*) of the active subscribers."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    if scenario not in SCENARIOS:
        Console(stderr=True).print(f"[red]error:[/red] unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        raise typer.Exit(1)
    if subscribers is None:
        subscribers = 1_000_000 if scenario == "audience" else 100_000
    config = BenchConfig(
        scenario=scenario, subscribers=subscribers, workers=workers, pool=pool, concurrency=concurrency,
        admin_url=os.environ.get("COURSE_BENCH_POSTGRES_URL", BenchConfig.admin_url),
        database=database, redis_url=os.environ.get("COURSE_BENCH_REDIS_URL", BenchConfig.redis_url),
        keep_database=keep_database,
    )
    err = Console(stderr=True)
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=err, transient=as_json) as bar:
        task = bar.add_task("starting", total=1)

        def show(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=max(total, 1))

        try:
            if scenario == "audience":
                report = run_audience_benchmark(config, show, runs=runs)
            else:
                report = run_benchmark(config, show)
        except BenchError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        Console(soft_wrap=True).print(audience_table(report) if scenario == "audience" else report_table(report))
