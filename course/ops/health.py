"""Signs of life: heartbeats of the long-running parts, and the checks that read them.

Each part writes one row in `heartbeats` with the time it last did its job:
- `dispatcher`: after every dispatcher run (so it proves beat, the broker and a worker together);
- `worker:<host>`: every heartbeat_interval_seconds from each worker's main process;
- `beat`: every heartbeat_interval_seconds from the beat process.

`describe_heartbeats` turns them into lines such as "dispatcher last ran 4 min ago" and says which
are alarms; `/readyz`, `course status` and `course health` (the containers' health checks) print
them. A database or broker that does not answer makes the web app not ready; a stale heartbeat is
reported loudly but does not take the web pages out of a load balancer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from course.models import Heartbeat
from course.settings import Settings

log = logging.getLogger(__name__)

DISPATCHER = "dispatcher"
BEAT = "beat"


def worker_component(host: str | None = None) -> str:
    return f"worker:{host or socket.gethostname()}"


def record_heartbeat(session: Session, component: str, *, now: datetime, detail: str = "") -> None:
    """Insert or refresh one component's row (one statement on PostgreSQL and SQLite alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    values = {"component": component, "host": socket.gethostname(), "pid": os.getpid(), "beat_at": now, "detail": detail[:500]}
    statement = insert(Heartbeat).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Heartbeat.component],
            set_={"host": statement.excluded.host, "pid": statement.excluded.pid, "beat_at": statement.excluded.beat_at, "detail": statement.excluded.detail},
        )
    )


def read_heartbeats(session: Session) -> list[Heartbeat]:
    return list(session.scalars(select(Heartbeat).order_by(Heartbeat.component)))


@dataclass(frozen=True)
class HeartbeatStatus:
    component: str
    last_seen: datetime | None
    age: timedelta | None
    stale: bool
    line: str  # "dispatcher last ran 4 s ago"


def stale_after(settings: Settings, component: str) -> timedelta:
    """How old a heartbeat may be before it is an alarm: a few of its own periods, at least."""
    period = settings.dispatch_interval_seconds if component == DISPATCHER else settings.heartbeat_interval_seconds
    return timedelta(seconds=max(settings.heartbeat_stale_seconds, 3 * period))


def describe_heartbeats(rows: list[Heartbeat], *, now: datetime, settings: Settings) -> list[HeartbeatStatus]:
    """One status per component; the dispatcher is always listed, as an alarm if it never ran."""
    by_component = {row.component: row for row in rows}
    statuses = []
    if DISPATCHER not in by_component:
        statuses.append(HeartbeatStatus(DISPATCHER, None, None, True, "dispatcher has never run: is `course beat` running?"))
    for component, row in sorted(by_component.items()):
        age = max(now - row.beat_at, timedelta(0))
        stale = age > stale_after(settings, component)
        verb = "last ran" if component == DISPATCHER else "last seen"
        line = f"{component} {verb} {_age(age)} ago ({row.host}, pid {row.pid})"
        if row.detail:
            line += f": {row.detail}"
        statuses.append(HeartbeatStatus(component, row.beat_at, age, stale, line))
    return statuses


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def database_answers(sessions: sessionmaker[Session]) -> str | None:
    """None when a trivial query answers, else the reason."""
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", with its reason
        return f"database: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def broker_url_of(settings: Settings) -> str:
    return settings.broker_url or settings.redis_url


def broker_answers(settings: Settings, timeout: float = 1.0) -> str | None:
    """None when the broker answers a PING (Redis) or is not a network service (the embedded one)."""
    url = broker_url_of(settings)
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"broker: {exc}"
    return None


class HeartbeatThread:
    """Writes one component's heartbeat every `interval` seconds from a daemon thread, for processes
    whose main loop is not ours (Celery's worker and beat). A failed write is logged and retried
    at the next tick: a database blip must not kill the process it reports on."""

    def __init__(self, sessions: sessionmaker[Session], component: str, *, interval: float, now: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.component = component
        self.interval = interval
        self.now = now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{component}", daemon=True)

    def start(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)

    def beat_once(self) -> bool:
        try:
            with self.sessions.begin() as session:
                record_heartbeat(session, self.component, now=self.now())
            return True
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot record the %s heartbeat: %s", self.component, exc)
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat_once()
            self._stop.wait(self.interval)
