"""`course bench`: the whole sending pipeline against this machine's SMTP ceiling, on real parts.

This module starts and stops the processes and services and runs the steps below; seed.py writes
the scenario, measure.py reads the figures, report.py shapes them, command.py is the CLI.

One run:
1. Recreates a PostgreSQL database of its own (course_bench; dropped after the report unless
   --keep-database), flushes a Redis database of its own
   (/14), starts Postfix's smtp-sink on a free port, and starts the workers as real processes
   (`celery -A course.devtools.bench.probe worker`: the production app plus passive counters) and one
   dispatcher process consuming the dispatch queue, as `course worker` would run it.
2. Seeds the scenario with INSERT … SELECT over generate_series, never row by row:
   - lesson-day: N subscribers in mixed time zones enrolled in a 3-lesson course, lesson 1 sent,
     lesson 2 due now, lesson 3 due tomorrow;
   - campaign: N tagged subscribers (plus 10% untagged), then the campaign is scheduled for now and
     fanned out (timed), exactly as the campaign task does.
3. Plays beat: publishes `course.dispatch` every dispatch_interval_seconds, and waits until no row is
   open, showing progress by the sink's count (the ledger is asked only once that count reaches the
   total or stands still, so the harness does not load the database it measures).
4. Reads the figures from the ledger (due_at and sent_at of every row), from the workers' counters,
   from /proc (peak RSS), from PostgreSQL and from Redis.
5. Measures the ceiling: smtp-source pushes the same number of messages of the same size into the
   same sink over as many connections as the pipeline held open.

Accept time: a row's sent_at is written by ledger.record once per send task, after the task's last
SMTP transaction, so it is an upper bound on each message's accept time, late by at most one task's
send time (send_chunk_size messages; well under a second). Lateness = sent_at - due_at."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import sessionmaker

from course.devtools.bench.config import BENCH_SECRET, PIPELINE_SCENARIOS, SMTP_SINK, SMTP_SOURCE, BenchConfig, BenchError
from course.devtools.bench.measure import (
    StatementCounter,
    child_pids,
    ledger_figures,
    measure_ceiling,
    open_count,
    open_rows,
    peak_rss_mib,
    read_probe_stats,
    redis_commands,
    sample_message_size,
    sink_accepted,
    xact_commits,
)
from course.devtools.bench.report import build_report
from course.devtools.bench.seed import schedule_bench_campaign, seed_course, seed_lesson_day, seed_subscribers

__all__ = ["SMTP_SINK", "SMTP_SOURCE", "BenchConfig", "BenchError", "drop_database", "run_benchmark"]

Progress = Callable[[str, int, int], None]  # phase, done, total

def _quiet(_phase: str, _done: int, _total: int) -> None:
    pass


# --- services -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"smtp-sink did not start listening on 127.0.0.1:{port}")

def start_sink(port: int, counter_path: Path) -> subprocess.Popen[bytes]:
    """smtp-sink with -c: it writes a running count of accepted messages to counter_path."""
    if not Path(SMTP_SINK).exists():
        raise BenchError(f"{SMTP_SINK} not found: install Postfix's tools (scripts/services.sh)")
    command = [SMTP_SINK, "-c"]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root
    with counter_path.open("wb") as counter:
        sink = subprocess.Popen([*command, f"127.0.0.1:{port}", "1000"], stdout=counter, stderr=subprocess.DEVNULL)
    _wait_for_port(port)
    return sink

def recreate_database(config: BenchConfig) -> None:
    admin = create_engine(config.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{config.database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{config.database}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL to run against
        raise BenchError(f"cannot create database {config.database} via {config.admin_url}: {exc}") from exc
    finally:
        admin.dispose()

def drop_database(config: BenchConfig) -> None:
    admin = create_engine(config.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{config.database}" WITH (FORCE)'))
    finally:
        admin.dispose()

def release_database(config: BenchConfig, engine: Engine | None = None) -> None:
    """After a run: the engine disposed, and the database dropped unless it is to be kept; a failed
    drop is ignored (the report matters more than the clean-up)."""
    if engine is not None:
        engine.dispose()
    if not config.keep_database:
        with contextlib.suppress(Exception):
            drop_database(config)


def flush_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"Redis not reachable at {url}: {exc}") from exc
    return client

@dataclass
class WorkerProcess:
    role: str  # "sender" or "dispatcher"
    process: subprocess.Popen[bytes]
    log_path: Path

def start_workers(config: BenchConfig, env: dict[str, str], stats_dir: Path, log_dir: Path) -> list[WorkerProcess]:
    """The send workers plus one dispatcher, each `celery -A course.devtools.bench.probe worker`."""
    base = [sys.executable, "-m", "celery", "-A", "course.devtools.bench.probe", "worker", "--loglevel=WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    started: list[WorkerProcess] = []
    roles = [("sender", i) for i in range(config.worker_count)] + [("dispatcher", 0)]
    for role, index in roles:
        if role == "sender":
            options = [f"--pool={config.pool}", "--queues=priority,bulk", f"--hostname=send{index}@%h"]
            if config.pool in ("prefork", "threads"):
                options.append(f"--concurrency={config.concurrency}")
        else:
            options = ["--pool=solo", "--queues=dispatch", "--hostname=dispatch@%h"]
        log_path = log_dir / f"{role}{index}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([*base, *options], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        started.append(WorkerProcess(role, process, log_path))
    deadline = time.monotonic() + 60
    while len(list(stats_dir.glob("ready-*"))) < len(started):
        for worker in started:
            if worker.process.poll() is not None:
                raise BenchError(f"a {worker.role} worker exited at start: {worker.log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError("the workers did not become ready within 60 s")
        time.sleep(0.1)
    return started

def stop_workers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)  # warm shutdown: counters are written at exit
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def stop_sink(sink: subprocess.Popen[bytes]) -> None:
    sink.send_signal(signal.SIGTERM)
    try:
        sink.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sink.kill()


# --- the run --------------------------------------------------------------------------------------


def run_benchmark(config: BenchConfig, progress: Progress = _quiet) -> dict[str, Any]:
    if config.scenario not in PIPELINE_SCENARIOS:
        raise BenchError(f"unknown pipeline scenario {config.scenario!r} (known: {', '.join(PIPELINE_SCENARIOS)}; "
                         "audience runs through audience.run_audience_benchmark)")
    from course import schema
    from course.db import make_engine
    from course.settings import Settings

    work_dir = Path(tempfile.mkdtemp(prefix="course-bench-"))
    stats_dir, log_dir = work_dir / "stats", work_dir / "logs"
    stats_dir.mkdir()
    log_dir.mkdir()
    port = free_port()
    sink_counter = work_dir / "sink-counter"
    sink = start_sink(port, sink_counter)
    workers: list[WorkerProcess] = []
    engine: Engine | None = None
    try:
        recreate_database(config)
        broker = flush_redis(config.redis_url)
        env = {
            **os.environ,
            "COURSE_DATABASE_URL": config.database_url,
            "COURSE_BROKER_URL": config.redis_url,
            "COURSE_REDIS_URL": config.redis_url,
            "COURSE_SMTP_HOST": "127.0.0.1",
            "COURSE_SMTP_PORT": str(port),
            "COURSE_SECRET_KEY": BENCH_SECRET,
            "COURSE_VAR_DIR": str(work_dir / "var"),
            "COURSE_CLOCK_SPEED": "1",
            "COURSE_BENCH_STATS_DIR": str(stats_dir),
            **config.extra_env,
        }
        # The workers read the same COURSE_* environment; these point it at the benchmark's services.
        settings = Settings(database_url=config.database_url, broker_url=config.redis_url, smtp_port=port,
                            secret_key=BENCH_SECRET, var_dir=work_dir / "var")
        engine = make_engine(config.database_url)
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        progress("starting workers", 0, 1)
        workers = start_workers(config, env, stats_dir, log_dir)
        n = config.subscribers
        now = datetime.now(timezone.utc)
        figures: dict[str, Any] = {}
        seed_started = time.perf_counter()
        progress("seeding", 0, 1)
        fan_out_statements = 0
        if config.scenario == "lesson-day":
            # Rows become due at a moment chosen past the end of seeding, as on a real lesson day
            # (written days ahead, due at 09:00): the lateness measured is the pipeline's alone.
            # 100 µs a subscriber: seeding a 1M lesson day (3M ledger rows) took 75 s on a loaded
            # 2-core machine, and 40 µs let the rows fall due 26 s before they were even visible.
            due_at = first_due = now + timedelta(seconds=config.due_margin_seconds + n * 100e-6)
            with sessions.begin() as session:
                seed_subscribers(session, n, now=now, tag=None)
                course_id, lesson_ids = seed_course(session, now=now)
                seed_lesson_day(session, course_id=course_id, lesson_ids=lesson_ids, now=now, due_at=due_at)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE"))
            figures["seed_seconds"] = round(time.perf_counter() - seed_started, 2)
            with sessions.begin() as session:
                message_bytes = sample_message_size(settings, config.scenario, session)
            wait = (due_at - datetime.now(timezone.utc)).total_seconds()
            figures["seed_overran_due_by_seconds"] = round(max(0.0, -wait), 2)
            if wait > 0:
                time.sleep(wait)
        else:
            from course.campaigns.service import fan_out

            with sessions.begin() as session:
                seed_subscribers(session, n, now=now, tag="newsletter", untagged=n // 10)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE"))
            figures["seed_seconds"] = round(time.perf_counter() - seed_started, 2)
            counter = StatementCounter(engine)
            progress("fan-out", 0, 1)
            with sessions.begin() as session:
                campaign_id, first_due = schedule_bench_campaign(session, now=datetime.now(timezone.utc))
            fan_out_started = time.perf_counter()
            with sessions.begin() as session:
                written = fan_out(session, campaign_id, now=datetime.now(timezone.utc))
            fan_out_seconds = time.perf_counter() - fan_out_started
            fan_out_statements = counter.count
            event.remove(engine, "before_cursor_execute", counter._seen)
            figures["fan_out"] = {"rows": written, "seconds": round(fan_out_seconds, 3),
                                  "rows_per_second": round(written / fan_out_seconds, 1)}
            with sessions.begin() as session:
                message_bytes = sample_message_size(settings, config.scenario, session)

        # Play beat: a dispatch every interval, as `celery beat` would publish it.
        with sessions() as session:
            commits_before = xact_commits(session, config.database)
        redis_before = redis_commands(broker)
        from celery import Celery

        publisher = Celery("bench", broker=config.redis_url)
        interval = settings.dispatch_interval_seconds
        finished = threading.Event()

        def play_beat() -> None:
            while not finished.is_set():
                publisher.send_task("course.dispatch", queue="dispatch", expires=interval * 2)
                finished.wait(interval)

        beat = threading.Thread(target=play_beat, name="bench-beat", daemon=True)
        run_started = time.perf_counter()
        beat.start()
        deadline = time.monotonic() + config.timeout_seconds
        with sessions() as session:
            sent, waiting = open_rows(session, first_due)
        total = sent + waiting
        # The run is followed by the sink's count, not the ledger: counting the run's rows is a scan
        # of the ledger, which every half second would load the database under test by O(N) a look
        # and O(N²) a run. The ledger is asked only when the count reaches the total or stands still
        # (the last records being written, retries waiting, rows that failed).
        accepted = sink_accepted(sink_counter)
        while True:
            time.sleep(0.5)
            before, accepted = accepted, sink_accepted(sink_counter)
            progress("sending", min(accepted, total), total)
            if before < accepted < total:
                pass  # still sending: the ledger is not asked
            elif open_count(sessions, first_due) == 0:
                break
            for worker in workers:
                if worker.process.poll() is not None:
                    raise BenchError(f"a {worker.role} worker died: {worker.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                still_open = open_count(sessions, first_due)
                raise BenchError(f"{still_open} deliveries still open after {config.timeout_seconds:.0f} s")
        finished.set()
        beat.join()
        run_seconds = time.perf_counter() - run_started
        redis_after = redis_commands(broker)
        time.sleep(1.0)  # pg_stat_database is flushed about once a second
        with sessions() as session:
            commits_after = xact_commits(session, config.database)
            ledger = ledger_figures(session, first_due)
        if config.scenario == "campaign":
            from course.campaigns.service import refresh_campaign_status

            with sessions.begin() as session:
                figures["campaign_status"] = refresh_campaign_status(session, campaign_id)
        rss = {}
        for worker in workers:
            pids = [worker.process.pid, *child_pids(worker.process.pid)]
            rss[worker.process.pid] = {"role": worker.role, "peak_rss_mib": max(peak_rss_mib(pid) for pid in pids),
                                       "pids": pids}
        stop_workers(workers)
        probes = read_probe_stats(stats_dir)
        time.sleep(0.2)
        accepted_by_sink = sink_accepted(sink_counter)
        ceiling = None
        if config.ceiling:
            progress("ceiling (smtp-source)", 0, 1)
            ceiling = measure_ceiling(port, messages=ledger["sent"], size=message_bytes, connections=config.connections)
        return build_report(config, figures, ledger, probes, rss, ceiling, run_seconds=run_seconds,
                            message_bytes=message_bytes, fan_out_statements=fan_out_statements,
                            redis_delta=redis_after - redis_before, commits_delta=commits_after - commits_before,
                            sink_accepted=accepted_by_sink)
    finally:
        stop_workers(workers)
        stop_sink(sink)
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            # A 1M run leaves ~1 GB of ledger; nothing reads it once the report is made.
            with contextlib.suppress(Exception):
                drop_database(config)
        shutil.rmtree(work_dir, ignore_errors=True)
