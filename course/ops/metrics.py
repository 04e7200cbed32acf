"""Prometheus metrics (prometheus_client).

Two kinds, for two places:

- The ledger's state, read from the database when a scrape comes in (LedgerCollector): deliveries by
  state and kind, rows in flight, dispatcher lag (how long the oldest due row has waited), heartbeat
  ages, and the broker's queue depths. Served by the web app at /metrics; any process can serve it,
  since it reads only shared state.
- What the worker processes do, counted as it happens: send latency from due time (histogram), SMTP
  replies by code class, rows the dispatcher claimed, outcome writes. Celery's prefork children are
  separate processes, so these use prometheus_client's multiprocess mode: with COURSE_METRICS_DIR set,
  `course worker` points PROMETHEUS_MULTIPROC_DIR there, each child writes its own files, and
  `course metrics` (or the web app on the same machine, when it sees the same folder) merges them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.ops.health import broker_url_of, read_heartbeats
from course.models import Delivery, DeliveryState
from course.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUEUES = ("priority", "dispatch", "bulk")  # the Celery queues (worker/config.py names them)

# Buckets for "due → accepted by the SMTP server": seconds to hours, since a retried row counts from
# its first due time.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 24 * 3600, float("inf"))

SEND_LATENCY = Histogram(
    "course_send_latency_seconds",
    "Seconds from a delivery's due time to the SMTP server's acceptance",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
SMTP_REPLIES = Counter(
    "course_smtp_replies_total",
    "SMTP transactions by outcome: 2xx, 4xx, 5xx, or unknown (time-out or disconnect after DATA)",
    ["code_class"],
)
DISPATCH_CLAIMED = Counter("course_dispatch_claimed_total", "Rows the dispatcher claimed and handed to send tasks")
DISPATCH_RUNS = Counter("course_dispatch_runs_total", "Dispatcher runs")
# 1 for the mode the send journal is in (durable, volatile, off), in the process that last read it:
# a volatile journal keeps the outcome groups small (course/delivery/journal.py, docs/reliability.md).
SEND_JOURNAL_MODE = Gauge(
    "course_send_journal_mode", "1 for the send journal's mode: durable, volatile or off", ["mode"], multiprocess_mode="livemostrecent"
)
OUTCOME_WRITES = Counter(
    "course_outcome_writes_total", "Writes of send outcomes to the ledger, by result (ok, retried, abandoned)", ["result"]
)


def code_class(code: int | None) -> str:
    """'2xx', '4xx', '5xx', or 'unknown' for no reply at all."""
    if code is None or not 200 <= code < 600:
        return "unknown"
    return f"{code // 100}xx"


class LedgerCollector(Collector):
    """Reads the ledger at scrape time: a handful of indexed aggregate queries."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        by_state = GaugeMetricFamily("course_deliveries", "Delivery rows by state and kind", labels=["state", "kind"])
        in_flight = GaugeMetricFamily("course_deliveries_in_flight", "Rows leased or sending whose lease still runs")
        lag = GaugeMetricFamily("course_dispatch_lag_seconds", "How long the oldest due pending row has waited (0: none waits)")
        heartbeat = GaugeMetricFamily(
            "course_heartbeat_age_seconds", "Seconds since each component's last heartbeat", labels=["component"]
        )
        with self.sessions() as session:
            counts = session.execute(select(Delivery.state, Delivery.kind, func.count()).group_by(Delivery.state, Delivery.kind)).all()
            seen = {(state, kind) for state, kind, _ in counts}
            for state, kind, count in counts:
                by_state.add_metric([state, kind], count)
            for state in DeliveryState:  # every state present, so alerts on "failed > 0" have a series
                if not any(s == state for s, _ in seen):
                    by_state.add_metric([state.value, "lesson"], 0)
            in_flight.add_metric(
                [],
                session.scalar(
                    select(func.count()).where(
                        Delivery.state.in_([DeliveryState.LEASED, DeliveryState.SENDING]), Delivery.lease_expires_at >= now
                    )
                )
                or 0,
            )
            oldest_due = session.scalar(
                select(func.min(Delivery.due_at)).where(Delivery.state == DeliveryState.PENDING, Delivery.due_at <= now)
            )
            lag.add_metric([], (now - oldest_due).total_seconds() if oldest_due else 0.0)
            for row in read_heartbeats(session):
                heartbeat.add_metric([row.component], max((now - row.beat_at).total_seconds(), 0.0))
        yield by_state
        yield in_flight
        yield lag
        yield heartbeat
        depth = queue_depths(self.settings)
        if depth is not None:
            family = GaugeMetricFamily("course_queue_depth", "Send and dispatch tasks waiting in the broker", labels=["queue"])
            for queue, length in depth.items():
                family.add_metric([queue], length)
            yield family


def queue_depths(settings: Settings) -> dict[str, int] | None:
    """Tasks waiting per queue on a Redis broker (a list per queue); None for other brokers or when
    Redis does not answer (the scrape still serves everything else)."""
    url = broker_url_of(settings)
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return {queue: int(client.llen(queue)) for queue in QUEUES}
        finally:
            client.close()
    except redis.RedisError:
        return None


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def registry_for(sessions: sessionmaker[Session] | None, settings: Settings) -> CollectorRegistry:
    """The ledger collector (when `sessions` is given) plus the worker counters: merged from every
    process's files in multiprocess mode, else this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    if sessions is not None:
        registry.register(LedgerCollector(sessions, settings))
    folder = multiprocess_dir()
    if folder is not None and folder.is_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=str(folder))
    else:
        for metric in (SEND_LATENCY, SMTP_REPLIES, DISPATCH_CLAIMED, DISPATCH_RUNS, OUTCOME_WRITES):
            registry.register(metric)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
