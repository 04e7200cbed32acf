"""`course bench --scenario mixed`: a signup burst at the web app while a campaign sends.

What it answers: when an article goes viral during a newsletter send, do the readers' confirmation
mails still arrive at once (issue #14's target: at the SMTP sink within 10 s p99), i.e. are they
claimed and sent ahead of the bulk mail, and what does the campaign's rate lose meanwhile?

One run:
1. Recreates a PostgreSQL database of its own (course_bench_mixed; dropped after the report unless
   --keep-database), flushes its Redis database, starts smtp-sink, the send workers and one
   dispatcher exactly as the lesson-day and campaign scenarios do (harness.start_workers), and the
   web app exactly as `course web --workers 2` serves it (web.start_server).
2. Seeds N tagged subscribers and the course the readers sign up for, schedules a campaign to them
   for now and fans it out (as the campaign beat task does).
3. Plays beat (a `course.dispatch` every dispatch_interval_seconds, a `course.signups` every
   signup_interval_seconds between them) and at once starts the burst:
   `signups` POSTs to /api/subscriptions, each a new address from a client address of its own
   (X-Forwarded-For through the trusted local proxy), sent on a fixed schedule (an open loop:
   signup i is due at start + i × burst_seconds / signups, whether or not earlier answers came
   back) over keep-alive connections by an asyncio client in this process.
4. Waits until the sink has accepted every campaign mail and every confirmation (followed by the
   sink's count, as the other scenarios do), then reads the figures from the ledger.

Signup -> accepted: per confirmation, the ledger's `sent_at` of its delivery row minus the
`requested_at` of the signup that caused it (signup_requests.confirm_delivery_id). requested_at is
written by the web request (its clock, when the request is handled); sent_at by ledger.record once
per send task after the task's last SMTP transaction, so it is an upper bound on the moment the
sink accepted the message, late by at most one task's send time. The sink's own log would need a
write per message (smtp-sink -d) on the cores under test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from course.devtools.bench.config import BENCH_SECRET, BenchConfig, BenchError

Progress = Callable[[str, int, int], None]

COURSE_SLUG = "bench-course"  # seed.seed_course's course


@dataclass
class MixedBenchConfig:
    admin_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test"
    database: str = "course_bench_mixed"
    redis_url: str = "redis://127.0.0.1:6379/14"
    subscribers: int = 100_000  # the campaign's recipients
    signups: int = 10_000
    burst_seconds: float = 60.0
    workers: int = 0  # send worker processes; 0: one per core
    web_workers: int = 2
    connections: int = 32  # the burst client's keep-alive connections
    keep_database: bool = False
    timeout_seconds: float = 1800.0
    extra_env: dict[str, str] | None = None

    def pipeline(self) -> BenchConfig:
        return BenchConfig(scenario="campaign", subscribers=self.subscribers, workers=self.workers,
                           admin_url=self.admin_url, database=self.database, redis_url=self.redis_url)


# --- the burst client -----------------------------------------------------------------------------


@dataclass
class BurstResult:
    sent: int
    accepted: int  # 202
    other_status: dict[int, int]
    errors: int  # connection failures
    latencies_ms: list[float]  # send -> answer, per answered request
    behind_schedule_ms: list[float]  # how late each request left against its schedule
    started_at: datetime
    seconds: float


def _signup_request(index: int, tag: str) -> bytes:
    body = json.dumps({"course": COURSE_SLUG, "email": f"burst-{tag}-{index}@example.org", "name": "Reader",
                       "timezone": "Europe/Berlin"}).encode()
    client = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    head = (f"POST /api/subscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Forwarded-For: {client}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection kept open) of one HTTP/1.1 answer with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def _burst(port: int, *, signups: int, seconds: float, connections: int, tag: str,
                 progress: Callable[[int], None]) -> BurstResult:
    interval = seconds / signups
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    started_at = datetime.now(timezone.utc)
    next_index = 0
    accepted = errors = 0
    other: dict[int, int] = {}
    latencies: list[float] = []
    behind: list[float] = []

    async def connection() -> None:
        nonlocal next_index, accepted, errors
        reader = writer = None
        while next_index < signups:
            index = next_index
            next_index += 1
            due = start + index * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                sent = loop.time()
                behind.append(max(0.0, sent - due) * 1000)
                writer.write(_signup_request(index, tag))
                status, keep = await _read_answer(reader)
                latencies.append((loop.time() - sent) * 1000)
                if status == 202:
                    accepted += 1
                else:
                    other[status] = other.get(status, 0) + 1
                if not keep:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
            if index % 100 == 0:
                progress(index)
        if writer is not None:
            writer.close()

    began = loop.time()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return BurstResult(sent=next_index, accepted=accepted, other_status=other, errors=errors, latencies_ms=latencies,
                       behind_schedule_ms=behind, started_at=started_at, seconds=loop.time() - began)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 1)}


# --- the run --------------------------------------------------------------------------------------


def run_mixed_benchmark(config: MixedBenchConfig, progress: Progress) -> dict[str, Any]:
    from celery import Celery
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from course import schema
    from course.campaigns.service import fan_out
    from course.db import make_engine
    from course.devtools.bench.harness import (
        drop_database,
        flush_redis,
        free_port,
        recreate_database,
        start_sink,
        start_workers,
        stop_sink,
        stop_workers,
    )
    from course.devtools.bench.measure import sink_accepted
    from course.devtools.bench.seed import schedule_bench_campaign, seed_course, seed_subscribers
    from course.devtools.bench.web import start_server, stop_server
    from course.settings import Settings
    from course.web.server import APP_FACTORY

    pipeline = config.pipeline()
    work_dir = Path(tempfile.mkdtemp(prefix="course-bench-mixed-"))
    stats_dir, log_dir = work_dir / "stats", work_dir / "logs"
    stats_dir.mkdir()
    log_dir.mkdir()
    smtp_port = free_port()
    sink_counter = work_dir / "sink-counter"
    sink = start_sink(smtp_port, sink_counter)
    workers: list[Any] = []
    server: subprocess.Popen[bytes] | None = None
    engine = None
    finished = threading.Event()
    try:
        progress("seeding", 0, 1)
        recreate_database(pipeline)
        flush_redis(config.redis_url)
        env = {
            **os.environ,
            "COURSE_DATABASE_URL": pipeline.database_url,
            "COURSE_BROKER_URL": config.redis_url,
            "COURSE_REDIS_URL": config.redis_url,
            "COURSE_SMTP_HOST": "127.0.0.1",
            "COURSE_SMTP_PORT": str(smtp_port),
            "COURSE_SECRET_KEY": BENCH_SECRET,
            "COURSE_VAR_DIR": str(work_dir / "var"),
            "COURSE_CLOCK_SPEED": "1",
            "COURSE_BENCH_STATS_DIR": str(stats_dir),
            # Every reader of the burst gets a confirmation: no limit or cap in the way.
            "COURSE_SIGNUP_LIMIT_PER_IP": str(10**9),
            "COURSE_SIGNUP_LIMIT_PER_ADDRESS": str(10**9),
            "COURSE_CONFIRMATION_MAILS_PER_HOUR": str(10**9),
            "COURSE_TRUSTED_PROXIES": "127.0.0.1",
            **(config.extra_env or {}),
        }
        settings = Settings(database_url=pipeline.database_url, broker_url=config.redis_url, smtp_port=smtp_port,
                            secret_key=BENCH_SECRET, var_dir=work_dir / "var")
        engine = make_engine(pipeline.database_url)
        schema.upgrade(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        now = datetime.now(timezone.utc)
        with sessions.begin() as session:
            seed_subscribers(session, config.subscribers, now=now, tag="newsletter")
            seed_course(session, now=now)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))

        progress("starting workers and the web app", 0, 1)
        workers = start_workers(pipeline, env, stats_dir, log_dir)
        web_port = free_port()
        server = start_server(APP_FACTORY, web_port, env, config.web_workers, work_dir / "web.log")

        progress("fan-out", 0, 1)
        with sessions.begin() as session:
            campaign_id, campaign_due = schedule_bench_campaign(session, now=datetime.now(timezone.utc))
        with sessions.begin() as session:
            campaign_rows = fan_out(session, campaign_id, now=datetime.now(timezone.utc))

        # Play beat, as `celery beat` would publish the dispatch and the signups task.
        publisher = Celery("bench", broker=config.redis_url)
        interval, signup_interval = settings.dispatch_interval_seconds, settings.signup_interval_seconds

        def play_beat() -> None:
            next_dispatch = time.monotonic()
            while not finished.is_set():
                if time.monotonic() >= next_dispatch:
                    publisher.send_task("course.dispatch", queue="dispatch", expires=interval * 2)
                    next_dispatch += interval
                else:
                    publisher.send_task("course.signups", queue="dispatch", expires=signup_interval * 2)
                finished.wait(min(signup_interval, max(next_dispatch - time.monotonic(), 0.0)))

        beat = threading.Thread(target=play_beat, name="bench-beat", daemon=True)
        beat.start()
        load_before = os.getloadavg()
        burst = asyncio.run(_burst(
            web_port, signups=config.signups, seconds=config.burst_seconds, connections=config.connections,
            tag=f"{int(time.time())}", progress=lambda done: progress("signup burst", done, config.signups),
        ))
        load_during = os.getloadavg()

        # Wait for every campaign mail and every confirmation the burst caused.
        expected = campaign_rows + burst.accepted
        deadline = time.monotonic() + config.timeout_seconds
        accepted, still_since = sink_accepted(sink_counter), time.monotonic()
        while True:
            time.sleep(0.5)
            before, accepted = accepted, sink_accepted(sink_counter)
            progress("sending", min(accepted, expected), expected)
            if accepted >= expected:
                break
            if accepted > before:
                still_since = time.monotonic()
            elif time.monotonic() - still_since > 30:
                break  # nothing accepted for 30 s: report what arrived
            for worker in workers:
                if worker.process.poll() is not None:
                    raise BenchError(f"a {worker.role} worker died: {worker.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"{expected - accepted} messages not accepted after {config.timeout_seconds:.0f} s")
        finished.set()
        beat.join()
        time.sleep(1.0)  # the last send tasks' ledger.record
        with sessions() as session:
            figures = _ledger_figures(session, campaign_id, campaign_due, burst)
        stop_workers(workers)
        return {
            "scenario": "mixed", "subscribers": config.subscribers, "campaign_rows": campaign_rows,
            "signups_planned": config.signups, "burst_seconds": config.burst_seconds,
            "send_workers": pipeline.worker_count, "web_workers": config.web_workers,
            "client_connections": config.connections,
            "burst": {
                "sent": burst.sent, "accepted_202": burst.accepted, "other_status": burst.other_status,
                "connection_errors": burst.errors, "seconds": round(burst.seconds, 2),
                "signups_per_second": round(burst.sent / burst.seconds, 1) if burst.seconds else None,
                "latency_ms": _percentiles(burst.latencies_ms),
                "behind_schedule_ms": _percentiles(burst.behind_schedule_ms),
            },
            "sink_accepted": sink_accepted(sink_counter), "expected": expected,
            **figures,
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after_burst": [round(value, 2) for value in load_during],
            "cpus": os.cpu_count(),
        }
    finally:
        finished.set()
        if server is not None:
            stop_server(server)
        stop_workers(workers)
        stop_sink(sink)
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            with contextlib.suppress(Exception):
                drop_database(pipeline)
        shutil.rmtree(work_dir, ignore_errors=True)


def _ledger_figures(session: Any, campaign_id: int, campaign_due: datetime, burst: BurstResult) -> dict[str, Any]:
    from sqlalchemy import text

    confirm = session.execute(text(
        """
        SELECT count(*) AS signups,
               count(d.id) FILTER (WHERE d.state = 'sent') AS confirmations_sent,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.sent_at - s.requested_at)) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.sent_at - s.requested_at)) AS p99,
               max(extract(epoch FROM d.sent_at - s.requested_at)) AS max,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.handled_at - s.requested_at)) AS q50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.handled_at - s.requested_at)) AS q99,
               min(s.requested_at) AS first_signup, max(s.requested_at) AS last_signup
        FROM signup_requests s LEFT JOIN deliveries d ON d.id = s.confirm_delivery_id
        """
    )).one()
    campaign = session.execute(text(
        """
        SELECT count(*) FILTER (WHERE state = 'sent') AS sent,
               count(*) FILTER (WHERE state = 'sent' AND sent_at BETWEEN :first AND :last) AS during_burst,
               min(sent_at) AS first_sent, max(sent_at) AS last_sent
        FROM deliveries WHERE campaign_id = :campaign
        """
    ), {"campaign": campaign_id, "first": confirm.first_signup, "last": confirm.last_signup}).one()
    burst_span = (confirm.last_signup - confirm.first_signup).total_seconds() if confirm.signups > 1 else 0.0
    campaign_span = (campaign.last_sent - campaign_due).total_seconds() if campaign.last_sent else 0.0

    def seconds(value: Any) -> float | None:
        return None if value is None else round(float(value), 2)

    return {
        "confirmation_seconds": {  # signup (requested_at) -> accepted by the sink (sent_at, an upper bound)
            "signups": confirm.signups, "sent": confirm.confirmations_sent,
            "p50": seconds(confirm.p50), "p99": seconds(confirm.p99), "max": seconds(confirm.max),
        },
        "signup_queue_seconds": {"p50": seconds(confirm.q50), "p99": seconds(confirm.q99)},  # requested -> handled
        "campaign": {
            "sent": campaign.sent,
            "emails_per_second": round(campaign.sent / campaign_span, 1) if campaign_span else None,
            "seconds": round(campaign_span, 2),
            "during_burst_per_second": round(campaign.during_burst / burst_span, 1) if burst_span else None,
            "burst_started_after_seconds": round((burst.started_at - campaign_due).total_seconds(), 2),
        },
    }


def mixed_report_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    burst, confirm, campaign = report["burst"], report["confirmation_seconds"], report["campaign"]
    table = Table(title=f"course bench: mixed, {report['signups_planned']:,} signups in {report['burst_seconds']:g} s "
                        f"while a {report['campaign_rows']:,}-email campaign sends; {report['send_workers']} send "
                        f"workers, {report['web_workers']} web workers, load average "
                        f"{report['load_average_after_burst'][0]}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("signups sent / answered 202", f"{burst['sent']:,} / {burst['accepted_202']:,}"),
        ("other answers / connection errors", f"{burst['other_status'] or 0} / {burst['connection_errors']}"),
        ("signups/s (achieved)", f"{burst['signups_per_second']}"),
        ("signup answer p50 / p99 / max ms", _triple(burst["latency_ms"])),
        ("requests behind schedule p50 / p99 / max ms", _triple(burst["behind_schedule_ms"])),
        ("confirmations sent / signups queued", f"{confirm['sent']:,} / {confirm['signups']:,}"),
        ("signup -> accepted by the sink p50 / p99 / max s", _triple(confirm)),
        ("signup -> handled by the worker p50 / p99 s",
         f"{report['signup_queue_seconds']['p50']} / {report['signup_queue_seconds']['p99']}"),
        ("campaign emails/s during the burst", f"{campaign['during_burst_per_second']}"),
        ("campaign emails/s end to end", f"{campaign['emails_per_second']} ({campaign['seconds']} s)"),
        ("sink accepted / expected", f"{report['sink_accepted']:,} / {report['expected']:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    table.caption = ("signup -> accepted: the confirmation's ledger sent_at (written after its send task's last SMTP "
                     "transaction, an upper bound) minus the signup's requested_at")
    return table


def _triple(values: dict[str, Any]) -> str:
    return f"{values['p50']} / {values['p99']} / {values['max']}"
