"""`course bench --scenario admin`: every admin page that reads the audience, timed at N subscribers
(default 100,000; the issue's figure is --subscribers 1000000).

One run:
1. Recreates a PostgreSQL database of its own (course_bench; dropped after the report unless
   --keep-database) and migrates it.
2. Seeds, set-based over generate_series a slice at a time (a progress bar follows): N subscribers
   (mostly active; every 20th unsubscribed, every 50th bounced, every 33rd pending; signed up over
   the last 90 days in ten time zones), their tags (bakers/readers, lapsed), a five-lesson course
   everyone is enrolled in, five lesson rows each through the ledger (lessons 1-3 sent, a few
   failed, 4-5 pending: 5 rows a reader), and the event record (signed up, confirmed, unsubscribed,
   bounced). The counters are then what the rows imply (course.counters.backfill), as migration
   0023 leaves a database that had rows; VACUUM ANALYZE, the steady state autovacuum keeps.
3. Times each page in-process through the app's own ASGI stack (a TestClient signed in as an owner;
   the JSON routes with an API token): one untimed warm-up round, then `runs` rounds, each asking
   every page once, so a burst of load on the shared machine falls on all of them alike. "export
   start" is the time to the first chunk of the CSV export (the response streams the rest).
4. Reports p50 and p95 per page, against PAGE_BUDGET_MS (the issue's bound: p95 ≤ 300 ms).

The figures are for docs/performance.md; nothing here is a pass/fail test."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, time as clock_time, timedelta
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from course.devtools.bench.config import BENCH_SECRET, BenchConfig, BenchError

Progress = Callable[[str, int, int], None]  # phase, done, total

SEED_SLICE = 100_000
LESSONS = 5
PAGE_BUDGET_MS = 300.0
COURSE_SLUG = "bench-admin-course"
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles", "Europe/London",
         "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo", "Africa/Lagos", "UTC")

# What each subscriber n is (n = its id, 1..N): the seeding and the figures checked after it agree.
STATUS_SQL = (
    "CASE WHEN n % 20 = 0 THEN 'unsubscribed' WHEN n % 50 = 1 THEN 'bounced' "
    "WHEN n % 33 = 2 THEN 'pending' ELSE 'active' END"
)


def pages(subscriber_id: int) -> list[tuple[str, str]]:
    """(label, path) of every page and route timed; `subscriber_id` is one in the middle."""
    a_week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    return [
        ("dashboard", "/admin/dashboard"),
        ("dashboard (API)", "/api/admin/dashboard"),
        ("subscribers: first page", "/admin/subscribers"),
        ("subscribers: a later page", f"/admin/subscribers?cursor={subscriber_id}"),
        ("search: address prefix", "/admin/subscribers?q=reader12345"),
        ("search: substring", "/admin/subscribers?q=eader9876"),
        ("search: name", "/admin/subscribers?q=Reader+4242"),
        ("filter: status unsubscribed", "/admin/subscribers?status=unsubscribed"),
        ("filter: status pending", "/admin/subscribers?status=pending"),
        ("filter: tag", "/admin/subscribers?tag=lapsed"),
        ("filter: course", f"/admin/subscribers?course={COURSE_SLUG}"),
        ("filter: lesson reached", f"/admin/subscribers?course={COURSE_SLUG}&lesson=3"),
        ("filter: time zone", "/admin/subscribers?timezone=Asia/Tokyo"),
        ("filter: signed up between", f"/admin/subscribers?from={a_week_ago}&to={yesterday}"),
        ("filter: tag + status + zone", "/admin/subscribers?tag=bakers&status=active&timezone=Europe/Berlin"),
        ("subscribers (API)", "/api/admin/subscribers?status=active&tag=bakers"),
        ("subscriber page", f"/admin/subscribers/{subscriber_id}"),
        ("subscriber (API)", f"/api/admin/subscribers/{subscriber_id}"),
        ("courses page", "/admin/courses"),
        ("course page (funnel)", f"/admin/courses/{COURSE_SLUG}"),
        ("funnel (API)", f"/api/admin/courses/{COURSE_SLUG}/funnel"),
        ("campaigns page", "/admin/campaigns"),
    ]


# --- seeding --------------------------------------------------------------------------------------


def _seed_course(session: Session, now: datetime) -> tuple[int, list[int]]:
    from course.content.blocks import Paragraph
    from course.content.lesson_body import LessonBody
    from course.models import Course, Lesson

    course = Course(
        slug=COURSE_SLUG, title="Bread at Home", description="", days_between_lessons=2, send_time=clock_time(9, 0),
        weekday_mask=0b1111111, sender_name="Bread at Home", sender_email="bread@example.org", target_words=300,
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(course)
    session.flush()
    lessons = [
        Lesson(course_id=course.id, position=i, title=f"Lesson {i}", body=LessonBody(blocks=(Paragraph("Knead."),)).to_json(),
               words=300, reading_minutes=2, content_hash=f"{i:064d}", updated_at=now)
        for i in range(1, LESSONS + 1)
    ]  # fmt: skip
    session.add_all(lessons)
    session.flush()
    return course.id, [lesson.id for lesson in lessons]


def seed(session: Session, n: int, now: datetime, progress: Progress) -> tuple[int, list[int]]:
    """The subscribers, tags, enrollments, lesson rows and events (see the module's docstring)."""
    from course.ledger import insert_lesson_rows
    from course.models import DeliveryState, Enrollment

    course_id, lesson_ids = _seed_course(session, now)
    zones = "ARRAY[" + ",".join(f"'{zone}'" for zone in ZONES) + "]"
    # Signed up over the last 90 days: day n % 90 back, minute n % 1440 of it.
    created = "CAST(:now AS timestamptz) - (n % 90) * interval '1 day' - (n % 1440) * interval '1 minute'"
    done = 0
    progress("seeding", 0, n)
    while done < n:
        first, last = done + 1, min(done + SEED_SLICE, n)
        span = {"first": first, "last": last, "now": now}
        session.execute(text(
            f"""INSERT INTO subscribers (id, email, name, timezone, status, created_at, confirmed_at, unsubscribed_at)
            SELECT n, 'reader' || n || '@example.org', 'Reader ' || n, ({zones})[1 + n % {len(ZONES)}], {STATUS_SQL},
                   {created}, CASE WHEN n % 33 = 2 AND n % 20 <> 0 AND n % 50 <> 1 THEN NULL ELSE {created} + interval '5 minutes' END,
                   CASE WHEN n % 20 = 0 OR n % 50 = 1 THEN {created} + interval '3 days' END
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n"""
        ), span)  # fmt: skip
        session.execute(text(
            """INSERT INTO subscriber_tags (subscriber_id, tag)
            SELECT n, CASE WHEN n % 3 = 0 THEN 'bakers' ELSE 'readers' END FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n
            UNION ALL SELECT n, 'lapsed' FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n WHERE n % 7 = 0"""
        ), span)  # fmt: skip
        session.execute(text(
            """INSERT INTO enrollments (id, subscriber_id, course_id, status, enrolled_at)
            SELECT n, n, :course, CASE WHEN n % 20 = 0 OR n % 50 = 1 THEN 'unsubscribed' WHEN n % 33 = 2 THEN 'pending'
                                      WHEN n % 40 = 3 THEN 'paused' ELSE 'active' END, created_at
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n JOIN subscribers ON subscribers.id = n"""
        ), {**span, "course": course_id})  # fmt: skip
        # The event record: signed up and (unless pending) confirmed; unsubscribed or bounced after.
        session.execute(text(
            """INSERT INTO subscriber_events (subscriber_id, kind, occurred_at)
            SELECT id, 'signed_up', created_at FROM subscribers WHERE id BETWEEN :first AND :last
            UNION ALL SELECT id, 'confirmed', confirmed_at FROM subscribers WHERE id BETWEEN :first AND :last AND confirmed_at IS NOT NULL
            UNION ALL SELECT id, status, unsubscribed_at FROM subscribers
                      WHERE id BETWEEN :first AND :last AND status IN ('unsubscribed', 'bounced')"""
        ), span)  # fmt: skip
        # Five lesson rows a confirmed reader, through the ledger: lessons 1-3 sent (one row in 97
        # of lesson 3 failed instead), 4 and 5 pending.
        cohort = select(Enrollment.id, Enrollment.subscriber_id).where(
            Enrollment.course_id == course_id, Enrollment.id.between(first, last), Enrollment.status != "pending"
        )
        for position, lesson_id in enumerate(lesson_ids, start=1):
            if position <= 3:
                sent_on = now - timedelta(days=2 * (4 - position))
                if position == 3:
                    insert_lesson_rows(session, lesson_id, cohort.where(Enrollment.id % 97 == 0), due_at=sent_on,
                                       state=DeliveryState.FAILED, now=sent_on)  # fmt: skip
                    insert_lesson_rows(session, lesson_id, cohort.where(Enrollment.id % 97 != 0), due_at=sent_on,
                                       state=DeliveryState.SENT, now=sent_on)  # fmt: skip
                else:
                    insert_lesson_rows(session, lesson_id, cohort, due_at=sent_on, state=DeliveryState.SENT, now=sent_on)
            else:
                insert_lesson_rows(session, lesson_id, cohort.where(Enrollment.status.in_(("active", "paused"))),
                                   due_at=now + timedelta(days=2 * (position - 3)), state=DeliveryState.PENDING, now=now)  # fmt: skip
        done = last
        progress("seeding", done, n)
    for table in ("subscribers", "enrollments", "subscriber_events"):  # ids given explicitly above
        session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    return course_id, lesson_ids


def _vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


# --- timing ---------------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def time_pages(client: Any, token: str, measured: list[tuple[str, Callable[[], None] | str]], runs: int,
               progress: Progress) -> dict[str, list[float]]:  # fmt: skip
    """Seconds of every timed run per label; a page that does not answer 200 ends the run."""
    seconds: dict[str, list[float]] = {label: [] for label, _ in measured}
    total, done = (runs + 1) * len(measured), 0
    for round_number in range(runs + 1):  # round 0 warms the caches and is not kept
        for label, target in measured:
            started = time.perf_counter()
            if callable(target):
                target()
            else:
                headers = {"Authorization": f"Bearer {token}"} if target.startswith("/api/") else {}
                answer = client.get(target, headers=headers, follow_redirects=False)
                if answer.status_code != 200:
                    raise BenchError(f"{label} ({target}) answered {answer.status_code}: {answer.text[:300]}")
            elapsed = time.perf_counter() - started
            if round_number:
                seconds[label].append(elapsed)
            done += 1
            progress("timing pages" if round_number else "warm-up round", done, total)
    return seconds


def run_admin_benchmark(config: BenchConfig, progress: Progress, *, runs: int = 20, reuse: bool = False) -> dict[str, Any]:
    """The run in the module's docstring; `reuse` times a database an earlier run seeded and kept
    (--keep-database) again, without seeding it anew (to try an index, or to time again)."""
    from course import counters, schema
    from course.accounts.store import create_admin, create_api_token, open_session
    from course.audience.export import ExportFilter, export_csv
    from course.db import make_engine
    from course.devtools.bench.harness import recreate_database, release_database
    from course.models import AdminRole
    from course.settings import Settings
    from course.web.in_process import in_process_client

    if runs < 2:
        raise BenchError("runs must be at least 2 (a p95 of one run says nothing)")
    engine: Engine | None = None
    now = datetime.now(UTC)
    try:
        seed_started = time.perf_counter()
        if reuse:
            engine = make_engine(config.database_url)
            schema.upgrade(engine)
            sessions = sessionmaker(engine, expire_on_commit=False)
            with sessions.begin() as session:
                seeded = session.scalar(text("SELECT count(*) FROM subscribers"))
                if seeded != config.subscribers:
                    raise BenchError(f"--reuse-database: {config.database} holds {seeded} subscribers, not {config.subscribers}")
                session.execute(text("DELETE FROM admins WHERE email = 'owner@example.org'"))
                session.execute(text("DELETE FROM api_tokens WHERE name = 'bench'"))
        else:
            progress("creating the database", 0, 1)
            recreate_database(config)
            engine = make_engine(config.database_url)
            schema.upgrade(engine)
            sessions = sessionmaker(engine, expire_on_commit=False)
            with sessions.begin() as session:
                seed(session, config.subscribers, now, progress)
                progress("counters from the rows", 0, 1)
                counters.backfill(session)
        with sessions.begin() as session:
            admin, _ = create_admin(session, email="owner@example.org", role=AdminRole.OWNER, password="bench owner password", now=now)
            cookie = open_session(session, admin.id, now=now)
            _, token = create_api_token(session, name="bench", role=AdminRole.OWNER, created_by=None, now=now)
        if not reuse:
            progress("VACUUM ANALYZE", 0, 1)
            _vacuum(engine)
        seed_seconds = time.perf_counter() - seed_started
        with engine.connect() as connection:
            rows = {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("subscribers", "subscriber_tags", "enrollments", "deliveries", "subscriber_events", "counters")}  # fmt: skip
            server_version = str(connection.execute(text("SHOW server_version")).scalar())
        settings = Settings(database_url=config.database_url, secret_key=BENCH_SECRET, base_url="http://testserver",
                            broker_url="memory://", env="development")  # fmt: skip
        middle = max(1, config.subscribers // 2)

        def export_start() -> None:
            with sessions() as session:
                chunks = iter(export_csv(session, ExportFilter(status="active", tag="bakers", course_slug=None)))
                next(chunks)  # the header
                if not next(chunks, ""):  # the first chunk of rows
                    raise BenchError("the export gave no rows")

        with in_process_client(settings) as client:
            client.cookies.set("course_admin", cookie, path="/admin")
            measured: list[tuple[str, Callable[[], None] | str]] = [*pages(middle), ("export start (first rows)", export_start)]
            seconds = time_pages(client, token, measured, runs, progress)
        return {
            "scenario": "admin", "subscribers": config.subscribers, "runs": runs, "postgres": server_version,
            "seed_seconds": round(seed_seconds, 1), "reused_database": reuse, "rows": rows, "budget_ms": PAGE_BUDGET_MS,
            "pages": {
                label: {"p50_ms": round(statistics.median(values) * 1000, 1), "p95_ms": round(_percentile(values, 0.95) * 1000, 1),
                        "max_ms": round(max(values) * 1000, 1)}  # fmt: skip
                for label, values in seconds.items()
            },
        }  # fmt: skip
    finally:
        release_database(config, engine)


def admin_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    rows = report["rows"]
    table = Table(title=f"course bench: admin, {rows['subscribers']:,} subscribers, {rows['deliveries']:,} delivery rows, "
                        f"{rows['subscriber_events']:,} events; {report['runs']} runs a page after a warm-up; "
                        f"PostgreSQL {report['postgres']}; "
                        + ("an earlier run's database" if report["reused_database"] else f"seeding {report['seed_seconds']:.0f} s"))  # fmt: skip
    for column, justify in [("page", "left"), ("p50 ms", "right"), ("p95 ms", "right"), ("max ms", "right"), ("p95 ≤ budget", "left")]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for label, figures in report["pages"].items():
        within = "yes" if figures["p95_ms"] <= report["budget_ms"] else "NO"
        table.add_row(label, f"{figures['p50_ms']:.1f}", f"{figures['p95_ms']:.1f}", f"{figures['max_ms']:.1f}", within)
    return table
