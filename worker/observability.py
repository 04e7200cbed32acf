"""Heartbeats and counters of the Celery side (course/ops/health.py, course/ops/metrics.py): the
dispatcher's heartbeat and claimed-row count after each of its runs, and one heartbeat per worker
and per beat process from a background thread. Hooked to Celery's signals, so the tasks themselves
stay as they are."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery.signals import beat_init, task_postrun, worker_ready, worker_shutdown

from course.db import session_factory
from course.ops.metrics import DISPATCH_CLAIMED, DISPATCH_RUNS
from course.ops.health import BEAT, DISPATCHER, HeartbeatThread, record_heartbeat, worker_component
from course.settings import get_settings

log = logging.getLogger(__name__)

_threads: list[HeartbeatThread] = []


def _wall_now() -> datetime:
    # Heartbeats are about the machinery, so wall-clock time even when the demo runs the course
    # calendar fast.
    return datetime.now(UTC)


@task_postrun.connect
def _dispatcher_ran(sender: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    if getattr(sender, "name", None) != "course.dispatch" or state != "SUCCESS":
        return
    DISPATCH_RUNS.inc()
    if isinstance(retval, dict):
        DISPATCH_CLAIMED.inc(retval.get("claimed", 0))
    detail = f"claimed {retval.get('claimed', 0)} rows" if isinstance(retval, dict) else ""
    try:
        with session_factory(get_settings()).begin() as session:
            record_heartbeat(session, DISPATCHER, now=_wall_now(), detail=detail)
    except Exception as exc:  # noqa: BLE001 - a heartbeat must never fail the task it reports on
        log.warning("cannot record the dispatcher heartbeat: %s", exc)


def _start(component: str) -> None:
    settings = get_settings()
    _threads.append(
        HeartbeatThread(session_factory(settings), component, interval=settings.heartbeat_interval_seconds, now=_wall_now).start()
    )


@worker_ready.connect
def _worker_ready(**_: Any) -> None:
    _start(worker_component())


@beat_init.connect
def _beat_started(**_: Any) -> None:
    _start(BEAT)


@worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    while _threads:
        _threads.pop().stop()
