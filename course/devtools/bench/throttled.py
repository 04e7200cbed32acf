"""`course bench --scenario throttled`: does a provider's max_per_second hold for the whole fleet?

One run:
1. Recreates its PostgreSQL database, flushes its Redis database, and starts a sink: an aiosmtpd
   server in this process that notes the arrival time (time.monotonic()) of every message's DATA.
2. Starts `workers` send worker processes (4 by default) and a dispatcher, as the pipeline
   scenarios do, with the default provider limited to `limit` messages a second (COURSE_SMTP_MAX_PER_SECOND):
   the only thing between them is the gate in Redis (course/delivery/gate.py).
3. Fans out a campaign of `messages` recipients and plays beat until no row is open.
4. From the arrival times at the sink: the most messages in any 1 s window (a window starting at
   each arrival), and the mean rate from the first arrival to the last.

Targets (issue 27): max_in_any_1s_window <= limit + 5 %, mean_per_second >= 95 % of the limit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from course.devtools.bench.config import BENCH_SECRET, BenchConfig, BenchError

Progress = Callable[[str, int, int], None]


def max_in_window(arrivals: Sequence[float], window: float = 1.0) -> int:
    """The most arrivals in any half-open window [t, t + window) of the given length. Pure."""
    times = sorted(arrivals)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def per_second(arrivals: Sequence[float]) -> list[int]:
    """Arrivals in each whole second counted from the first one (shows ramp-up, gaps and the tail). Pure."""
    if not arrivals:
        return []
    first = min(arrivals)
    counts = [0] * (int(max(arrivals) - first) + 1)
    for moment in arrivals:
        counts[int(moment - first)] += 1
    return counts


def mean_rate(arrivals: Sequence[float]) -> float:
    """Messages a second from the first arrival to the last. Pure."""
    if len(arrivals) < 2:
        return 0.0
    times = sorted(arrivals)
    return (len(times) - 1) / (times[-1] - times[0])


class TimingSink:
    """A real SMTP server (aiosmtpd) that accepts everything and notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> int:
        from course.devtools.mailsink import start_controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink._lock:
                    sink.arrivals.append(time.monotonic())
                return "250 OK"

        self._controller = start_controller(Handler(), "127.0.0.1", 0)
        return int(self._controller.port)

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()


def run_throttled_benchmark(config: BenchConfig, progress: Progress, *, limit: float, messages: int) -> dict[str, Any]:
    from celery import Celery
    from sqlalchemy.orm import sessionmaker

    from course import schema
    from course.campaigns.service import fan_out
    from course.db import make_engine
    from course.devtools.bench.harness import flush_redis, recreate_database, start_workers, stop_workers, drop_database
    from course.devtools.bench.measure import open_count
    from course.devtools.bench.seed import schedule_bench_campaign, seed_subscribers

    work_dir = Path(tempfile.mkdtemp(prefix="course-bench-throttled-"))
    stats_dir, log_dir = work_dir / "stats", work_dir / "logs"
    stats_dir.mkdir()
    log_dir.mkdir()
    sink = TimingSink()
    port = sink.start()
    workers: list[Any] = []
    engine = None
    try:
        recreate_database(config)
        flush_redis(config.redis_url)
        env = {
            **os.environ,
            "COURSE_DATABASE_URL": config.database_url,
            "COURSE_BROKER_URL": config.redis_url,
            "COURSE_REDIS_URL": config.redis_url,
            "COURSE_SMTP_HOST": "127.0.0.1",
            "COURSE_SMTP_PORT": str(port),
            "COURSE_SMTP_MAX_PER_SECOND": str(limit),
            "COURSE_SECRET_KEY": BENCH_SECRET,
            "COURSE_VAR_DIR": str(work_dir / "var"),
            "COURSE_CLOCK_SPEED": "1",
            "COURSE_BENCH_STATS_DIR": str(stats_dir),
            **config.extra_env,
        }
        engine = make_engine(config.database_url)
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        progress("starting workers", 0, 1)
        workers = start_workers(config, env, stats_dir, log_dir)
        progress("seeding", 0, 1)
        now = datetime.now(UTC)
        with sessions.begin() as session:
            seed_subscribers(session, messages, now=now, tag="newsletter")
        with sessions.begin() as session:
            campaign_id, first_due = schedule_bench_campaign(session, now=datetime.now(UTC))
        with sessions.begin() as session:
            total = fan_out(session, campaign_id, now=datetime.now(UTC))
        publisher = Celery("bench", broker=config.redis_url)
        interval = 5.0
        finished = threading.Event()

        def play_beat() -> None:
            while not finished.is_set():
                publisher.send_task("course.dispatch", queue="dispatch", expires=interval * 2)
                finished.wait(interval)

        beat = threading.Thread(target=play_beat, name="bench-beat", daemon=True)
        beat.start()
        deadline = time.monotonic() + max(config.timeout_seconds, 0) if config.timeout_seconds else None
        try:
            while True:
                time.sleep(0.5)
                accepted = sink.count()
                progress(f"sending at {limit:g}/s", min(accepted, total), total)
                if accepted >= total and open_count(sessions, first_due) == 0:
                    break
                for worker in workers:
                    if worker.process.poll() is not None:
                        raise BenchError(f"a {worker.role} worker died: {worker.log_path.read_text()[-2000:]}")
                if deadline is not None and time.monotonic() > deadline:
                    raise BenchError(f"{total - accepted} messages still unsent after {config.timeout_seconds:.0f} s")
        finally:
            finished.set()
            beat.join()
        arrivals = list(sink.arrivals)
        peak = max_in_window(arrivals)
        mean = mean_rate(arrivals)
        return {
            "scenario": "throttled",
            "workers": config.worker_count,
            "messages": len(arrivals),
            "limit_per_second": limit,
            "max_in_any_1s_window": peak,
            "mean_per_second": round(mean, 1),
            "peak_to_limit": round(peak / limit, 3),
            "mean_to_limit": round(mean / limit, 3),
            "seconds": round(max(arrivals) - min(arrivals), 2) if arrivals else 0.0,
            "targets_met": peak <= limit * 1.05 and mean >= limit * 0.95,
            "per_second": per_second(arrivals),
            "load_average": [round(value, 2) for value in os.getloadavg()],
        }
    finally:
        stop_workers(workers)
        sink.stop()
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            try:
                drop_database(config)
            except Exception:  # noqa: BLE001 - best effort
                pass
        shutil.rmtree(work_dir, ignore_errors=True)


def throttled_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"throttled: {report['workers']} workers, {report['messages']:,} messages at the sink")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    limit = report["limit_per_second"]
    table.add_row("limit per second", f"{limit:g}", "")
    table.add_row("max in any 1 s window", str(report["max_in_any_1s_window"]), f"<= {limit * 1.05:g}")
    table.add_row("mean per second", f"{report['mean_per_second']:g}", f">= {limit * 0.95:g}")
    table.add_row("seconds", f"{report['seconds']:g}", "")
    table.add_row("targets met", "yes" if report["targets_met"] else "NO", "")
    return table
