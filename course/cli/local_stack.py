"""`course run`: the whole product on one machine, with nothing to install or start by hand.

1. Migrate the database (SQLite under var/ unless COURSE_DATABASE_URL says otherwise) and import
   content/.
2. Pick a broker: Redis when REDIS_URL answers, else the embedded SQLite broker.
3. Start the local SMTP sink, which keeps every message under var/mail/ for a person to read.
4. Start a real Celery worker with beat embedded (a subprocess, as in production) and the web app.
5. Optionally enroll demo subscribers in three time zones, and show a progress bar of their mail.

With --day-seconds the course calendar runs fast (a course day lasts that many seconds), through
a clock shared with the worker by environment variables, so a whole course arrives in minutes at
the right local hours (see the Date headers).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from course import schema
from course.clock import (
    DEMO_CLOCK_FILE,
    FastClock,
    continue_calendar,
    forget_demo_clock,
    get_clock,
    get_wall_clock,
    load_demo_clock,
    save_demo_clock,
)
from course.db import transaction
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.audience.course_content import import_content
from course.devtools.mailsink import MailSink
from course.models import Course, Delivery, DeliveryState
from course.settings import get_settings

DEMO_PEOPLE = (
    ("ada@example.com", "Ada", "Europe/London"),
    ("ben@example.com", "Ben", "America/New_York"),
    ("chiyo@example.com", "Chiyo", "Asia/Tokyo"),
)
FINAL_STATES = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.BOUNCED, DeliveryState.CANCELLED)


class StackError(RuntimeError):
    """A part of the local stack could not start; the message says which and why."""


@dataclass(frozen=True)
class RunOptions:
    day_seconds: float
    demo: bool
    host: str
    port: int
    mail_sink: bool
    until_done: bool
    timeout_seconds: float
    fresh: bool = False


def _configure_environment(options: RunOptions, broker_url: str, console: Console) -> None:
    """Everything the worker subprocess must agree on goes through the environment. A fast demo
    clock is also saved under var/, so commands run in another terminal against this database
    (`course subscribe`, `course status`) schedule on the demo's calendar, and a second run on the
    same var/ goes on with the calendar its rows were scheduled in."""
    os.environ["COURSE_BROKER_URL"] = broker_url
    os.environ.setdefault("COURSE_BASE_URL", f"http://{options.host}:{options.port}")
    settings = get_settings()
    previous = load_demo_clock(settings)
    if options.day_seconds != 86400:
        speed = 86400 / options.day_seconds
        now = time.time()
        clock = continue_calendar(previous, speed, wall=now) if previous else FastClock(origin=now, speed=speed)
        save_demo_clock(settings, clock)
        os.environ["COURSE_CLOCK_SPEED"] = str(clock.speed)
        os.environ["COURSE_CLOCK_ORIGIN"] = repr(clock.origin)
        # A dispatcher every 5 real seconds would be half a course day late at 10 s a day.
        os.environ.setdefault("COURSE_DISPATCH_INTERVAL_SECONDS", "0.5")
    elif previous is not None:
        forget_demo_clock(settings)
        console.print(
            "[yellow]note:[/yellow] this database was last run on a fast demo clock, whose calendar is ahead "
            "of the real one; its rows fall due at their calendar time. `course run --fresh` starts afresh."
        )
    get_settings.cache_clear()


def reset_embedded_state(console: Console) -> None:
    """--fresh: forget the embedded database, broker, mail folder and demo clock under var/. Only the
    embedded defaults: a configured database is never wiped by a flag."""
    settings = get_settings()
    if settings.database_url:
        raise StackError("--fresh only resets the embedded SQLite database; COURSE_DATABASE_URL is set, so nothing was removed")
    removed = []
    for name in ("course.db", "course.db-wal", "course.db-shm", "broker.sqlite", "broker.sqlite-wal", "broker.sqlite-shm"):
        path = settings.var_dir / name
        if path.exists():
            path.unlink()
            removed.append(name)
    if settings.mail_dir.exists():
        shutil.rmtree(settings.mail_dir)
        removed.append(f"{settings.mail_dir.name}/")
    if forget_demo_clock(settings):
        removed.append(DEMO_CLOCK_FILE)
    console.print(f"fresh     removed {', '.join(removed) if removed else 'nothing (var/ was already empty)'} from {settings.var_dir}")


@contextmanager
def _worker_process(log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    settings = get_settings()
    command = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        "--beat", f"--schedule={settings.var_dir / 'celerybeat-schedule'}",
        "--pool=threads", "--concurrency=4", "--queues=priority,dispatch,bulk", "--loglevel=INFO",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def _web_server(host: str, port: int) -> Iterator[None]:
    import uvicorn

    from course.web.server import served_app, uvicorn_options

    config = uvicorn.Config(served_app(), host=host, port=port, log_level="warning", **uvicorn_options(get_settings()))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise StackError(f"the web server could not start on {host}:{port} (is the port taken? use --port)")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def enroll_demo_people(slug: str | None) -> tuple[str, list[int]]:
    settings = get_settings()
    now = get_clock(settings).now()
    with transaction(settings) as session:
        query = select(Course).order_by(Course.slug)
        course = session.scalars(query.where(Course.slug == slug) if slug else query).first()
        if course is None:
            raise StackError(f"no course {slug!r} to enroll the demo subscribers in" if slug else "no course in content/")
        ids = []
        for address, name, zone in DEMO_PEOPLE:
            subscriber = get_or_create_subscriber(session, address, name=name, timezone_name=zone, now=now)
            enroll(session, subscriber, course, now=now)
            ids.append(subscriber.id)
        return course.slug, ids


DEMO_ADMIN = "admin@example.org"


def ensure_demo_admin() -> tuple[str, str | None]:
    """The demo's owner account, so a new user can sign in to the admin and send the demo readers
    a campaign: created with a one-time password on the first run (returned, to be printed once),
    left alone afterwards (None)."""
    from course.accounts.store import create_admin, find_admin, list_admins
    from course.models import AdminRole

    settings = get_settings()
    with transaction(settings) as session:
        if list_admins(session):
            existing = find_admin(session, DEMO_ADMIN)
            return (existing.email if existing else list_admins(session)[0].email), None
        admin, one_time = create_admin(session, email=DEMO_ADMIN, role=AdminRole.OWNER, password=None, now=get_wall_clock().now())
        return admin.email, one_time


def _demo_progress(subscriber_ids: list[int]) -> tuple[int, int]:
    with transaction() as session:
        rows = dict(
            session.execute(
                select(Delivery.state, func.count())
                .where(Delivery.subscriber_id.in_(subscriber_ids))
                .group_by(Delivery.state)
            ).all()
        )
    done = sum(rows.get(state.value, 0) for state in FINAL_STATES)
    return done, sum(rows.values())


def run_local_stack(options: RunOptions, *, console: Console, course_slug: str | None = None) -> int:
    from worker.config import resolve_broker_url

    # A SIGTERM (from `timeout`, a service manager, make being stopped) must run the `finally`
    # blocks below, or the worker subprocess would outlive us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if options.fresh:
        reset_embedded_state(console)
    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    schema.upgrade()
    with transaction(settings) as session:
        imported = import_content(session, settings.content_dir, now=get_clock(settings).now())
    broker_url = resolve_broker_url(settings)
    _configure_environment(options, broker_url, console)
    settings = get_settings()
    console.print(f"database  {settings.sqlalchemy_url}")
    console.print(f"broker    {broker_url}")
    console.print(f"courses   {', '.join(result.slug for result in imported) or 'none'}")
    if options.day_seconds != 86400:
        console.print(f"clock     one course day every {options.day_seconds:g} s")
    sink = MailSink(settings.mail_dir, host=settings.smtp_host, port=settings.smtp_port) if options.mail_sink else None
    if sink is not None:
        sink.start()
        console.print(f"mail      SMTP {settings.smtp_host}:{settings.smtp_port}, stored in {settings.mail_dir}/ (index: {sink.index_path})")
    try:
        with _worker_process(settings.var_dir / "worker.log") as worker, _web_server(options.host, options.port):
            console.print(f"worker    pid {worker.pid}, log {settings.var_dir / 'worker.log'}")
            console.print(f"web       {settings.base_url}/  (sign up at {settings.base_url}/courses/<slug>)")
            if not options.demo:
                console.print("Running. Press Ctrl-C to stop.")
                return _wait_forever(worker)
            slug, ids = enroll_demo_people(course_slug)
            admin_email, one_time = ensure_demo_admin()
            if one_time:
                console.print(f"admin     {settings.base_url}/admin/  sign in as {admin_email}, one-time password {one_time}", highlight=False)
            else:
                console.print(f"admin     {settings.base_url}/admin/  (forgot the password? course admin reset-password {admin_email})", highlight=False)
            done, total = _demo_progress(ids)
            if total and done == total:
                console.print(
                    f"demo      {', '.join(p[0] for p in DEMO_PEOPLE)} already have every lesson of {slug}: this var/ "
                    "is from an earlier run, so there is nothing more to send. Start afresh with `make run ARGS=--fresh` "
                    f"(or `course run --fresh`), or sign up at {settings.base_url}/courses/{slug}."
                )
                if options.until_done:
                    return 0
                console.print("Still serving. Press Ctrl-C to stop.")
                return _wait_forever(worker)
            console.print(f"demo      {', '.join(p[0] for p in DEMO_PEOPLE)} enrolled in {slug}; watch their lessons arrive")
            return _watch_demo(ids, worker, options, console)
    finally:
        if sink is not None:
            sink.stop()


def _wait_forever(worker: subprocess.Popen[bytes]) -> int:
    try:
        while worker.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    return worker.returncode or 1


def _watch_demo(ids: list[int], worker: subprocess.Popen[bytes], options: RunOptions, console: Console) -> int:
    deadline = time.monotonic() + options.timeout_seconds
    columns = (TextColumn("demo lessons"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("demo", total=None)
            while True:
                done, total = _demo_progress(ids)
                progress.update(task, completed=done, total=total)
                if worker.poll() is not None:
                    console.print(f"[red]error:[/red] the worker exited with status {worker.returncode}; see var/worker.log")
                    return 1
                if total and done == total:
                    break
                if options.until_done and time.monotonic() > deadline:
                    console.print(f"[red]error:[/red] demo not finished after {options.timeout_seconds:g} s ({done}/{total})")
                    return 1
                time.sleep(0.5)
        console.print(f"All {total} demo lessons are delivered: read them in {get_settings().mail_dir}/")
        if options.until_done:
            return 0
        console.print("Still serving. Press Ctrl-C to stop.")
        return _wait_forever(worker)
    except KeyboardInterrupt:
        return 0


