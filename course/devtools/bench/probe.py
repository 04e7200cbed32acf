"""The Celery app as `course bench` runs it: worker.app plus counters the benchmark reads back.

`celery -A course.devtools.bench.probe worker` is the production worker with three additions, all passive:
every SQL statement any engine in the process executes is counted (an executemany counts once per
parameter set, as the server sees it), the dispatcher's runs are timed, and the counters are written
to COURSE_BENCH_STATS_DIR/<pid>.json at most twice a second and at exit (nothing when it is unset). Nothing here changes what
the tasks do."""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_shutdown, worker_ready
from sqlalchemy import event
from sqlalchemy.engine import Engine

from worker.app import app  # noqa: F401  (the app celery -A finds here)

# Set by the harness for the workers it starts. Without it (the module merely imported, e.g. by a
# test walking the package) nothing is written: no stray <pid>.json in the current folder.
STATS_DIR = Path(os.environ["COURSE_BENCH_STATS_DIR"]) if os.environ.get("COURSE_BENCH_STATS_DIR") else None
_counters: dict[str, Any] = {
    "statements": 0,
    "round_trips": 0,
    "tasks": {},
    "dispatch_seconds": 0.0,
    "dispatch_claimed": 0,
    "dispatch_runs": [],  # [start unix time, seconds, claimed]
}
_started: dict[str, float] = {}
_last_write = 0.0


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    _counters["round_trips"] += 1
    _counters["statements"] += len(parameters) if executemany and parameters else 1


def _write(force: bool = False) -> None:
    global _last_write
    if STATS_DIR is None:
        return
    now = time.monotonic()
    if not force and now - _last_write < 0.5:
        return
    _last_write = now
    target = STATS_DIR / f"{os.getpid()}.json"
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"pid": os.getpid(), **_counters}))
    partial.replace(target)


@task_prerun.connect
def _task_started(task_id: str, task: Any, **_: Any) -> None:
    _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_finished(task_id: str, task: Any, retval: Any = None, **_: Any) -> None:
    took = time.monotonic() - _started.pop(task_id, time.monotonic())
    _counters["tasks"][task.name] = _counters["tasks"].get(task.name, 0) + 1
    if task.name == "course.dispatch" and isinstance(retval, dict):
        _counters["dispatch_seconds"] += took
        _counters["dispatch_claimed"] += retval.get("claimed", 0)
        _counters["dispatch_runs"].append([time.time() - took, round(took, 4), retval.get("claimed", 0)])
    _write()


@worker_ready.connect
def _ready(**_: Any) -> None:
    if STATS_DIR is not None:
        (STATS_DIR / f"ready-{os.getpid()}").touch()


@worker_process_shutdown.connect
def _child_exit(**_: Any) -> None:
    _write(force=True)


atexit.register(_write, True)
