"""`course bench`: the Typer command (registered by course/cli/main.py) that builds a BenchConfig from
its options and the environment, shows the run's progress, and prints the report."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from course.devtools.bench.config import SCENARIOS, BenchConfig, BenchError

# What a scenario calls as it goes: (phase, done, total).
Progress = Callable[[str, int, int], None]


def bench_command(
    scenario: Annotated[
        str, typer.Option("--scenario", help="lesson-day, campaign, audience, web, mixed, import, throttled or admin")
    ] = "lesson-day",
    subscribers: Annotated[
        int | None, typer.Option("--subscribers", min=1, help="recipients (default 100,000; audience, import: 1,000,000)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="send worker processes (default: one per core)")] = 0,
    pool: Annotated[str, typer.Option("--pool", help="solo, prefork or threads")] = "solo",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="per worker (prefork, threads)")] = 1,
    database: Annotated[str, typer.Option("--database", help="PostgreSQL database to recreate")] = "course_bench",
    keep_database: Annotated[
        bool, typer.Option("--keep-database", help="leave the database in place after the run")
    ] = False,
    runs: Annotated[
        int, typer.Option("--runs", min=0, help="audience: timed runs of each shape (default 7); import: runs (default 3); admin: of each page (default 20)")
    ] = 0,
    reuse_database: Annotated[
        bool, typer.Option("--reuse-database", help="admin: time a database an earlier run seeded and kept, unseeded")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    seconds: Annotated[float, typer.Option("--seconds", min=1, help="web: seconds per endpoint and level")] = 10,
    connections: Annotated[
        str, typer.Option("--connections", help="web: comma-separated keep-alive connection counts")
    ] = "16,64",
    endpoints: Annotated[str, typer.Option("--endpoints", help="web: comma-separated subset (default: all)")] = "",
    signups: Annotated[int, typer.Option("--signups", min=1, help="mixed: signups in the burst")] = 10_000,
    burst_seconds: Annotated[float, typer.Option("--burst-seconds", min=1, help="mixed: the burst's length")] = 60,
    limit: Annotated[float, typer.Option("--limit", min=1, help="throttled: the provider's max_per_second")] = 200,
) -> None:
    """Measure the sending pipeline on real parts against smtp-source's ceiling on this machine,
    (--scenario audience) the audience count against a plain count(*) of the active subscribers,
    (--scenario admin) every admin page that reads the audience at N subscribers (p50, p95), or
    (--scenario web) the public web against a bare endpoint on the same server, or (--scenario mixed)
    how fast confirmation mails arrive during a signup burst while a campaign sends."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    # The scenarios' modules (Redis, Celery, the harness) load here: every `course` command
    # registers this one, and only a benchmark needs them.
    from course.devtools.bench.audience import audience_table, run_audience_benchmark
    from course.devtools.bench.harness import run_benchmark
    from course.devtools.bench.report import report_table

    if scenario not in SCENARIOS:
        Console(stderr=True).print(f"[red]error:[/red] unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        raise typer.Exit(1)
    if subscribers is None:
        subscribers = 1_000_000 if scenario in ("audience", "import") else 100_000
    config = BenchConfig(
        scenario=scenario, subscribers=subscribers, workers=workers, pool=pool, concurrency=concurrency,
        admin_url=os.environ.get("COURSE_BENCH_POSTGRES_URL", BenchConfig.admin_url),
        database=database, redis_url=os.environ.get("COURSE_BENCH_REDIS_URL", BenchConfig.redis_url),
        keep_database=keep_database,
    )
    err = Console(stderr=True)
    if scenario == "web":
        _web(config, err, as_json=as_json, seconds=seconds, connections=connections, endpoints=endpoints)
        return
    if scenario == "mixed":
        _mixed(config, err, as_json=as_json, signups=signups, burst_seconds=burst_seconds)
        return
    if scenario == "throttled":
        _throttled(config, err, as_json=as_json, limit=limit, subscribers_given=subscribers != 100_000)
        return
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=err, transient=as_json) as bar:
        task = bar.add_task("starting", total=1)

        def show(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=max(total, 1))

        try:
            if scenario == "audience":
                report = run_audience_benchmark(config, show, runs=runs or 7)
            elif scenario == "admin":
                from course.devtools.bench.admin import run_admin_benchmark

                report = run_admin_benchmark(config, show, runs=runs or 20, reuse=reuse_database)
            elif scenario == "import":
                from course.devtools.bench.imports import run_import_benchmark

                report = run_import_benchmark(config, show, runs=runs or 3)
            else:
                report = run_benchmark(config, show)
        except BenchError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        from course.devtools.bench.admin import admin_table
        from course.devtools.bench.imports import import_table

        tables = {"audience": audience_table, "import": import_table, "admin": admin_table}
        Console(soft_wrap=True).print(tables.get(scenario, report_table)(report))


def _web(config: BenchConfig, err: Any, *, as_json: bool, seconds: float, connections: str, endpoints: str) -> None:
    from rich.console import Console
    from course.devtools.bench.web import WebBenchConfig, run_web_benchmark, web_report_table

    try:
        levels = tuple(int(level) for level in connections.split(",") if level.strip())
    except ValueError:
        err.print(f"[red]error:[/red] --connections must be numbers separated by commas, not {connections!r}")
        raise typer.Exit(1) from None
    if not levels or min(levels) < 1:
        err.print("[red]error:[/red] --connections needs at least one count of 1 or more")
        raise typer.Exit(1)
    web_config = WebBenchConfig(
        admin_url=config.admin_url,
        database=config.database if config.database != BenchConfig.database else WebBenchConfig.database,
        seconds=seconds, connections=levels, keep_database=config.keep_database,
        endpoints=tuple(name.strip() for name in endpoints.split(",") if name.strip()),
    )
    report = _with_progress(err, as_json, lambda show: run_web_benchmark(web_config, show))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        Console(soft_wrap=True, width=max(170, Console().width)).print(web_report_table(report))


def _mixed(config: BenchConfig, err: Any, *, as_json: bool, signups: int, burst_seconds: float) -> None:
    from rich.console import Console
    from course.devtools.bench.mixed import MixedBenchConfig, mixed_report_table, run_mixed_benchmark

    mixed_config = MixedBenchConfig(
        admin_url=config.admin_url,
        database=config.database if config.database != BenchConfig.database else MixedBenchConfig.database,
        redis_url=config.redis_url, subscribers=config.subscribers, signups=signups, burst_seconds=burst_seconds,
        workers=config.workers, keep_database=config.keep_database,
    )
    report = _with_progress(err, as_json, lambda show: run_mixed_benchmark(mixed_config, show))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        Console(soft_wrap=True).print(mixed_report_table(report))


def _throttled(config: BenchConfig, err: Any, *, as_json: bool, limit: float, subscribers_given: bool) -> None:
    """A provider limited to `limit`/s, 4 send workers unless --workers says otherwise, 20 s of mail
    unless --subscribers says how many messages."""
    from rich.console import Console
    from course.devtools.bench.throttled import run_throttled_benchmark, throttled_table

    config.workers = config.workers or 4
    messages = config.subscribers if subscribers_given else int(limit * 20)
    report = _with_progress(err, as_json, lambda show: run_throttled_benchmark(config, show, limit=limit, messages=messages))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        Console(soft_wrap=True).print(throttled_table(report))


def _with_progress(err: Any, as_json: bool, run: Callable[[Progress], dict[str, Any]]) -> dict[str, Any]:
    """Runs a scenario that reports `(phase, done, total)` under a progress bar; a BenchError ends
    the command with one error line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=err, transient=as_json) as bar:
        task = bar.add_task("starting", total=1)

        def show(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=max(total, 1))

        try:
            return run(show)
        except BenchError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
