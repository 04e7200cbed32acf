"""Where the benchmark's figures come from: smtp-sink's running count, the ledger (due_at and
sent_at of every row), the workers' probe counters (course.devtools.bench.probe), /proc (peak RSS),
PostgreSQL's and Redis's own statistics, the size of one real message, and smtp-source's ceiling."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from course.devtools.bench.config import SMTP_SOURCE, BenchError

def sink_accepted(counter_path: Path) -> int:
    """The last "mesg=N" smtp-sink -c wrote: messages whose DATA it accepted so far. Reads only the
    file's tail: the count is cheap enough to follow a run by."""
    with counter_path.open("rb") as counter:
        counter.seek(max(0, counter.seek(0, os.SEEK_END) - 200))
        tail = counter.read().decode("ascii", "replace")
    counts = [part.split("=", 1)[1] for part in tail.replace("\r", " ").split() if part.startswith("mesg=")]
    return int(counts[-1]) if counts else 0

def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])

def child_pids(pid: int) -> list[int]:
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

def sample_message_size(settings: Any, scenario: str, session: Session) -> int:
    """The size of one message as the sender builds it, for smtp-source to send the same bytes."""
    from sqlalchemy import select

    from course.clock import SystemClock
    from course.delivery.compose import Composer
    from course.ledger import read_batch
    from course.models import Delivery

    delivery_id = session.scalar(
        select(Delivery.id).where(Delivery.state == "pending").order_by(Delivery.due_at, Delivery.id).limit(1)
    )
    batch = read_batch(session, [delivery_id])  # what take_over will read, without touching the row
    composed = Composer.from_settings(settings, clock=SystemClock()).delivery(batch.jobs[0], batch)
    return len(composed.message_bytes())

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

def open_count(sessions: sessionmaker[Session], since: datetime) -> int:
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

def read_probe_stats(stats_dir: Path) -> dict[int, dict[str, Any]]:
    stats = {}
    for path in stats_dir.glob("*.json"):
        try:
            stats[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            pass
    return stats
