"""`course bench`: the whole sending pipeline against this machine's SMTP ceiling, on real parts.

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
import json
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
from dataclasses import dataclass, field
from datetime import datetime, time as clock_time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

SCENARIOS = ("lesson-day", "campaign")
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles", "Europe/London",
         "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo", "Africa/Lagos", "UTC")
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
BENCH_SECRET = "bench-secret"
# A lesson of about 350 words: the size of a real one, so the bytes on the wire are realistic.
PARAGRAPH = (
    "Oxytocin is released in short pulses, and each pulse lasts only a minute or two. That is why "
    "a calm, familiar routine before a feed helps: the body learns the cues and starts the reflex "
    "a little earlier each time. Warmth, skin contact and a quiet room all help; stress hormones "
    "work against it, which is why a tense first week so often feels harder than it should."
)


class BenchError(RuntimeError):
    """A service or tool the benchmark needs is missing: the message says which and how to get it."""


@dataclass
class BenchConfig:
    scenario: str = "lesson-day"
    subscribers: int = 100_000
    workers: int = 0  # 0: one per core
    pool: str = "solo"
    concurrency: int = 1  # per worker process (prefork/threads)
    admin_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test"
    database: str = "course_bench"
    redis_url: str = "redis://127.0.0.1:6379/14"
    ceiling: bool = True
    keep_database: bool = False  # leave course_bench in place after the run, to look into it
    due_margin_seconds: float = 10.0  # lesson day: rows fall due this long (+100 µs a subscriber) after seeding starts
    timeout_seconds: float = 3600.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def database_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.database}"

    @property
    def connections(self) -> int:
        """SMTP connections the pipeline holds open: one per sending thread or process."""
        return self.worker_count * (self.concurrency if self.pool in ("prefork", "threads") else 1)


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


def sink_accepted(counter_path: Path) -> int:
    """The last "mesg=N" smtp-sink -c wrote: messages whose DATA it accepted so far. Reads only the
    file's tail: the count is cheap enough to follow a run by."""
    with counter_path.open("rb") as counter:
        counter.seek(max(0, counter.seek(0, os.SEEK_END) - 200))
        tail = counter.read().decode("ascii", "replace")
    counts = [part.split("=", 1)[1] for part in tail.replace("\r", " ").split() if part.startswith("mesg=")]
    return int(counts[-1]) if counts else 0


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


def flush_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"Redis not reachable at {url}: {exc}") from exc
    return client


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


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


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


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


# --- seeding --------------------------------------------------------------------------------------


def _lesson_body(index: int) -> dict[str, Any]:
    return {
        "blocks": [
            {"heading": None, "paragraphs": [PARAGRAPH, PARAGRAPH]},
            {"heading": f"Part {index}: what to try", "paragraphs": [PARAGRAPH, PARAGRAPH, PARAGRAPH]},
        ],
        "references": [],
    }


def seed_subscribers(session: Session, count: int, *, now: datetime, tag: str | None, untagged: int = 0) -> None:
    """count + untagged active subscribers; every tenth has a non-ASCII name (encoded-word headers)."""
    zones = "ARRAY[" + ",".join(f"'{zone}'" for zone in ZONES) + "]"
    session.execute(
        text(
            f"""
            INSERT INTO subscribers (email, name, timezone, status, created_at, confirmed_at)
            SELECT 'reader' || n || '@example.org',
                   CASE WHEN n % 10 = 0 THEN 'Zoë Łukasiewicz' ELSE 'Reader ' || n END,
                   ({zones})[1 + n % {len(ZONES)}], 'active', :now, :now
            FROM generate_series(1, :total) AS n
            """
        ),
        {"now": now, "total": count + untagged},
    )
    if tag is not None:
        session.execute(
            text("INSERT INTO subscriber_tags (subscriber_id, tag) SELECT id, :tag FROM subscribers WHERE id <= :count"),
            {"tag": tag, "count": count},
        )


def seed_course(session: Session, *, now: datetime) -> tuple[int, list[int]]:
    from course.models import Course, Lesson

    course = Course(
        slug="bench-course", title="Bonding, Explained", description="", days_between_lessons=1,
        send_time=clock_time(9, 0), weekday_mask=0b1111111, sender_name="Bonding Course",
        sender_email="course@example.org", target_words=300, created_at=now, updated_at=now,
    )
    session.add(course)
    session.flush()
    lessons = [
        Lesson(course_id=course.id, position=i, title=f"Lesson title {i}", body=_lesson_body(i), words=350,
               reading_minutes=2, content_hash=f"{i:064d}", updated_at=now)
        for i in (1, 2, 3)
    ]
    session.add_all(lessons)
    session.flush()
    return course.id, [lesson.id for lesson in lessons]


def seed_lesson_day(session: Session, *, course_id: int, lesson_ids: list[int], now: datetime, due_at: datetime) -> None:
    """Enroll everyone; lesson 1 sent yesterday, lesson 2 due at due_at, lesson 3 due tomorrow."""
    session.execute(
        text(
            "INSERT INTO enrollments (subscriber_id, course_id, status, enrolled_at) "
            "SELECT id, :course, 'active', :yesterday FROM subscribers"
        ),
        {"course": course_id, "yesterday": now - timedelta(days=1)},
    )
    for lesson_id, state, due in (
        (lesson_ids[0], "sent", now - timedelta(days=1)),
        (lesson_ids[1], "pending", due_at),
        (lesson_ids[2], "pending", due_at + timedelta(days=1)),
    ):
        session.execute(
            text(
                """
                INSERT INTO deliveries (subscriber_id, kind, enrollment_id, lesson_id, priority, due_at, state,
                                        attempts, sent_at, created_at)
                SELECT subscriber_id, 'lesson', id, :lesson, 100, :due, :state, :attempts, :sent_at, :now
                FROM enrollments WHERE course_id = :course
                """
            ),
            {"lesson": lesson_id, "due": due, "state": state, "attempts": 1 if state == "sent" else 0,
             "sent_at": due if state == "sent" else None, "now": now - timedelta(days=1), "course": course_id},
        )


def sample_message_size(settings: Any, scenario: str, session: Session) -> int:
    """The size of one message as the sender builds it, for smtp-source to send the same bytes."""
    from sqlalchemy import select

    from course.clock import SystemClock
    from course.ledger import take_over
    from course.delivery.links import signer_from_settings
    from course.models import Delivery
    from course.delivery.render import Renderer
    from course.delivery.sending import Sender

    delivery_id = session.scalar(
        select(Delivery.id).where(Delivery.state == "pending").order_by(Delivery.due_at, Delivery.id).limit(1)
    )
    # Read what take_over would read, inside a transaction that is rolled back.
    with session.begin_nested() as savepoint:
        session.execute(text("UPDATE deliveries SET state='leased', lease_token='sample' WHERE id=:id"), {"id": delivery_id})
        batch = take_over(session, [delivery_id], token="sample", now=datetime.now(timezone.utc), lease=timedelta(minutes=5))
        savepoint.rollback()
    sender = Sender(settings, sessions=None, transport=None, renderer=Renderer(settings.templates_dir),  # type: ignore[arg-type]
                    signer=signer_from_settings(settings), clock=SystemClock())
    _, message = sender._message(batch.jobs[0], batch, {})
    return len(message)


# --- measuring ------------------------------------------------------------------------------------


class StatementCounter:
    """Counts the statements the benchmark itself runs for the pipeline (fan-out), on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        self.count += len(parameters) if executemany and parameters else 1


def ledger_figures(session: Session, since: datetime) -> dict[str, Any]:
    """The run's rows: those that came due from `since` on."""
    row = session.execute(
        text(
            """
            SELECT count(*) FILTER (WHERE state = 'sent'),
                   count(*),
                   min(due_at), max(sent_at),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)),
                   max(extract(epoch FROM sent_at - due_at)),
                   count(*) FILTER (WHERE attempts > 1),
                   count(DISTINCT sent_at)
            FROM deliveries WHERE due_at BETWEEN :since AND now()
            """
        ),
        {"since": since},
    ).one()
    by_state = dict(
        session.execute(
            text("SELECT state, count(*) FROM deliveries WHERE due_at BETWEEN :since AND now() GROUP BY state"),
            {"since": since},
        ).all()
    )
    sent, total, first_due, last_sent, p50, p99, worst, retried, batches = row
    return {
        "sent": sent, "rows": total, "first_due": first_due, "last_sent": last_sent, "p50": p50, "p99": p99,
        "max": worst, "retried": retried, "record_batches": batches, "by_state": by_state,
    }


def open_rows(session: Session, since: datetime) -> tuple[int, int]:
    """(rows of this run sent, rows of this run still open)."""
    sent, waiting = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE state = 'sent'), "
            "count(*) FILTER (WHERE state IN ('pending', 'leased', 'sending')) "
            "FROM deliveries WHERE due_at BETWEEN :since AND now()"
        ),
        {"since": since},
    ).one()
    return sent, waiting


def _open_count(sessions: sessionmaker[Session], since: datetime) -> int:
    with sessions() as session:
        return open_rows(session, since)[1]


def xact_commits(session: Session, database: str) -> int:
    return int(session.scalar(text("SELECT xact_commit FROM pg_stat_database WHERE datname = :name"), {"name": database}))


def measure_ceiling(port: int, *, messages: int, size: int, connections: int) -> dict[str, Any]:
    """smtp-source: the same count of messages of the same size, over the same connections, each
    kept open (-d) like the workers' connections."""
    if not Path(SMTP_SOURCE).exists():
        raise BenchError(f"{SMTP_SOURCE} not found: install Postfix's tools (scripts/services.sh)")
    started = time.perf_counter()
    result = subprocess.run(
        [SMTP_SOURCE, "-d", "-s", str(connections), "-m", str(messages), "-l", str(size),
         "-f", "bench@example.org", "-t", "reader@example.org", f"127.0.0.1:{port}"],
        capture_output=True, timeout=3600,
    )
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(f"smtp-source failed: {result.stderr.decode(errors='replace')[-500:]}")
    return {"messages": messages, "seconds": round(took, 3), "rate": round(messages / took, 1),
            "connections": connections, "message_bytes": size}


def _read_probe_stats(stats_dir: Path) -> dict[int, dict[str, Any]]:
    stats = {}
    for path in stats_dir.glob("*.json"):
        try:
            stats[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            pass
    return stats


# --- the run --------------------------------------------------------------------------------------


def run_benchmark(config: BenchConfig, progress: Progress = _quiet) -> dict[str, Any]:
    if config.scenario not in SCENARIOS:
        raise BenchError(f"unknown scenario {config.scenario!r} (known: {', '.join(SCENARIOS)})")
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
            from course.campaigns.service import fan_out, schedule_campaign

            with sessions.begin() as session:
                seed_subscribers(session, n, now=now, tag="newsletter", untagged=n // 10)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE"))
            figures["seed_seconds"] = round(time.perf_counter() - seed_started, 2)
            counter = StatementCounter(engine)
            progress("fan-out", 0, 1)
            with sessions.begin() as session:
                campaign = schedule_campaign(
                    session, name="bench", subject="This week: sleep, feeding and the let-down reflex",
                    body_markdown="\n\n".join([PARAGRAPH] * 5), segment_tag="newsletter",
                    sender_name="The Bonding Letter", sender_email="letter@example.org",
                    send_at=None, now=datetime.now(timezone.utc),
                )
                campaign_id, first_due = campaign.id, campaign.send_at
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
            elif _open_count(sessions, first_due) == 0:
                break
            for worker in workers:
                if worker.process.poll() is not None:
                    raise BenchError(f"a {worker.role} worker died: {worker.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                still_open = _open_count(sessions, first_due)
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
            pids = [worker.process.pid, *_children(worker.process.pid)]
            rss[worker.process.pid] = {"role": worker.role, "peak_rss_mib": max(peak_rss_mib(pid) for pid in pids),
                                       "pids": pids}
        stop_workers(workers)
        probes = _read_probe_stats(stats_dir)
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
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            # A 1M run leaves ~1 GB of ledger; nothing reads it once the report is made.
            with contextlib.suppress(Exception):
                drop_database(config)
        shutil.rmtree(work_dir, ignore_errors=True)


def build_report(
    config: BenchConfig,
    figures: dict[str, Any],
    ledger: dict[str, Any],
    probes: dict[int, dict[str, Any]],
    rss: dict[int, dict[str, Any]],
    ceiling: dict[str, Any] | None,
    *,
    run_seconds: float,
    message_bytes: int,
    fan_out_statements: int,
    redis_delta: int,
    commits_delta: int,
    sink_accepted: int | None,
) -> dict[str, Any]:
    sent = ledger["sent"]
    span = (ledger["last_sent"] - ledger["first_due"]).total_seconds() if sent else 0.0
    statements = fan_out_statements + sum(p["statements"] for p in probes.values())
    round_trips = fan_out_statements + sum(p["round_trips"] for p in probes.values())
    dispatch_seconds = sum(p["dispatch_seconds"] for p in probes.values())
    dispatch_claimed = sum(p["dispatch_claimed"] for p in probes.values())
    senders = [r for r in rss.values() if r["role"] == "sender"]
    dispatchers = [r for r in rss.values() if r["role"] == "dispatcher"]
    end_to_end = sent / span if span > 0 else 0.0
    report: dict[str, Any] = {
        "scenario": config.scenario,
        "subscribers": config.subscribers,
        "workers": config.worker_count,
        "pool": config.pool,
        "smtp_connections": config.connections,
        "message_bytes": message_bytes,
        **figures,
        "emails_due": ledger["rows"],
        "emails_sent": sent,
        "sink_accepted": sink_accepted,
        "states": ledger["by_state"],
        "retried": ledger["retried"],
        "run_seconds": round(run_seconds, 2),
        "end_to_end": {"seconds": round(span, 2), "emails_per_second": round(end_to_end, 1)},
        "dispatch": {"claimed": dispatch_claimed, "busy_seconds": round(dispatch_seconds, 2),
                     "rows_per_second": round(dispatch_claimed / dispatch_seconds, 1) if dispatch_seconds else 0.0},
        "lateness_seconds": {"p50": round(float(ledger["p50"] or 0), 2), "p99": round(float(ledger["p99"] or 0), 2),
                             "max": round(float(ledger["max"] or 0), 2)},
        "peak_rss_mib": {"per_worker": [round(r["peak_rss_mib"], 1) for r in senders],
                         "max_worker": round(max((r["peak_rss_mib"] for r in senders), default=0), 1),
                         "dispatcher": round(max((r["peak_rss_mib"] for r in dispatchers), default=0), 1)},
        "database": {"statements": statements, "round_trips": round_trips,
                     "statements_per_email": round(statements / sent, 4) if sent else None,
                     "transactions": commits_delta,
                     "transactions_per_email": round(commits_delta / sent, 4) if sent else None},
        "redis": {"commands": redis_delta, "commands_per_email": round(redis_delta / sent, 4) if sent else None},
        "tasks": _sum_tasks(probes),
    }
    if ceiling is not None:
        report["ceiling"] = ceiling
        report["ratio_to_ceiling"] = round(end_to_end / ceiling["rate"], 3) if ceiling["rate"] else None
    return report


def _sum_tasks(probes: dict[int, dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for probe in probes.values():
        for name, count in probe["tasks"].items():
            total[name] = total.get(name, 0) + count
    return total


# --- the command ----------------------------------------------------------------------------------


def report_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"course bench: {report['scenario']}, {report['subscribers']:,} subscribers, "
                        f"{report['workers']} workers ({report['pool']}), {report['message_bytes']:,} B/message")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if "fan_out" in report:
        fan = report["fan_out"]
        table.add_row("fan-out", f"{fan['rows']:,} rows in {fan['seconds']:.2f} s = {fan['rows_per_second']:,.0f} rows/s")
    table.add_row("seeding (not part of the pipeline)", f"{report['seed_seconds']:.1f} s")
    table.add_row("emails sent / due / accepted by smtp-sink",
                  f"{report['emails_sent']:,} / {report['emails_due']:,} / {report['sink_accepted']:,}")
    table.add_row("dispatch", f"{report['dispatch']['rows_per_second']:,.0f} rows/s of dispatcher time")
    e2e = report["end_to_end"]
    table.add_row("end to end (first due → last accepted)", f"{e2e['emails_per_second']:,.0f} emails/s over {e2e['seconds']:.1f} s")
    if "ceiling" in report:
        ceiling = report["ceiling"]
        table.add_row(f"ceiling (smtp-source, {ceiling['connections']} connections)", f"{ceiling['rate']:,.0f} msgs/s")
        table.add_row("ratio to ceiling", f"{report['ratio_to_ceiling']:.2f}")
    late = report["lateness_seconds"]
    table.add_row("lateness p50 / p99 / max", f"{late['p50']:.1f} / {late['p99']:.1f} / {late['max']:.1f} s")
    rss = report["peak_rss_mib"]
    table.add_row("peak RSS per worker / dispatcher", f"{rss['max_worker']:.0f} / {rss['dispatcher']:.0f} MiB")
    db = report["database"]
    table.add_row("database statements per email", f"{db['statements_per_email']} ({db['statements']:,} statements)")
    table.add_row("database transactions per email", f"{db['transactions_per_email']}")
    table.add_row("Redis commands per email", f"{report['redis']['commands_per_email']}")
    return table


def bench_command(
    scenario: Annotated[str, typer.Option("--scenario", help="lesson-day or campaign")] = "lesson-day",
    subscribers: Annotated[int, typer.Option("--subscribers", min=1, help="recipients")] = 100_000,
    workers: Annotated[int, typer.Option("--workers", min=0, help="send worker processes (default: one per core)")] = 0,
    pool: Annotated[str, typer.Option("--pool", help="solo, prefork or threads")] = "solo",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="per worker (prefork, threads)")] = 1,
    database: Annotated[str, typer.Option("--database", help="PostgreSQL database to recreate")] = "course_bench",
    keep_database: Annotated[
        bool, typer.Option("--keep-database", help="leave the database in place after the run")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Measure the sending pipeline on real parts against smtp-source's ceiling on this machine."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

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
            report = run_benchmark(config, show)
        except BenchError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        Console(soft_wrap=True).print(report_table(report))
