"""A whole sending system of its own, for fault runs: a PostgreSQL cluster (initdb in a temporary
folder, its own port), a redis-server on a free port, a recording SMTP server that can be told to
misbehave, real `celery` worker processes and beat, all on loopback. Faults are injected into these
private copies only: the machine's shared PostgreSQL and Redis are never touched.

    with FaultStack(root, rows=1000) as stack:
        stack.start_workers(2, concurrency=2); stack.start_beat()
        stack.wait_until_received(300)
        stack.postgres.restart("immediate")
        result = stack.finish()   # waits for the ledger to settle, stops everything, runs `course audit`

`finish()` returns a RunResult: the duplicate count by Message-ID, the ledger's final states and the
audit's exit status and output. tests/faults/ and `make soak` both drive it.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from aiosmtpd.smtp import SMTP, Envelope, Session as SMTPSession
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from course.campaigns.service import fan_out, schedule_campaign
from course.db import make_engine
from course import schema
from course.devtools.mailsink import BoundPortController, DataHandler, ReceivedMessage, start_controller
from course.models import Delivery, DeliveryState
from course.settings import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

# The settings: lease 20 s, retry base 2 s, SMTP time-out 3 s, in-flight cap 2,000.
DEFAULT_ENVIRONMENT = {
    "COURSE_LEASE_SECONDS": "20",
    "COURSE_RETRY_BASE_SECONDS": "2",
    "COURSE_RETRY_MAX_SECONDS": "30",
    "COURSE_SMTP_TIMEOUT": "3",
    "COURSE_SMTP_CONNECT_TIMEOUT": "3",
    "COURSE_SMTP_DATA_TIMEOUT": "3",
    "COURSE_DISPATCH_MAX_IN_FLIGHT": "2000",
    "COURSE_DISPATCH_INTERVAL_SECONDS": "1",
    "COURSE_HEARTBEAT_INTERVAL_SECONDS": "2",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a service restarting answers with errors for a while
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- PostgreSQL ----------------------------------------------------------------------------------


class PostgresCluster:
    """A throwaway cluster: initdb in its own folder (as the `postgres` user when we are root, since
    PostgreSQL refuses to run as root), listening on 127.0.0.1 on a free port. fsync is off (no
    fault here crashes the OS, so the page cache survives every restart), but commits stay
    synchronous: an acknowledged commit must survive an immediate shutdown, as in production."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="course-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.bin = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
        if not (self.bin / "initdb").exists():
            found = shutil.which("initdb")
            self.bin = Path(found).resolve().parent if found else self.bin

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://course@127.0.0.1:{self.port}/course"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120, stdin=subprocess.DEVNULL)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "course", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "course", "course")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """`persistent`: an append-only file synced every second (the shipped docker-compose's Redis),
    so a restart, even after SIGKILL, keeps the data set; else no persistence at all."""

    def __init__(self, root: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.root = root
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.root),
                *(("--appendonly", "yes", "--appendfsync", "everysec") if self.persistent else ("--appendonly", "no")),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        wait_until(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), 20, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- SMTP ----------------------------------------------------------------------------------------


class FaultySMTPServer:
    """Accepts everything and records each message's Message-ID (one line per accepted message in
    `sink_log`, which `course audit --sink-log` reads), unless told to misbehave:

    - refuse_for(seconds, code): answer every DATA with `code` (421/451: transient, 550: permanent);
    - delay_replies(seconds, for_seconds): every MAIL, RCPT and DATA reply waits that long;
    - hang_after_data(times): take the next messages (recorded: the server queued them), then say
      nothing until the client gives up, as a server whose reply is lost after DATA.
    """

    def __init__(self, sink_log: Path) -> None:
        self.sink_log = sink_log
        self.host = "127.0.0.1"
        self._controller: BoundPortController | None = None
        self._lock = threading.Lock()
        self._sink = sink_log.open("a", buffering=1)
        self.received: Counter[str] = Counter()
        self.accepted = 0
        self.refused = 0
        self.hung = 0
        self._refuse_until = 0.0
        self._refuse_reply = ""
        self._delay = 0.0
        self._delay_until = 0.0
        self._hang_left = 0
        self.hang_seconds = 10.0
        self.base_delay = 0.0  # every DATA reply waits this long (a slower relay, for long soaks)
        self._random_refusals: list[tuple[float, str, float]] = []  # (probability, reply, until)

    @property
    def port(self) -> int:
        assert self._controller is not None
        return self._controller.port

    def start(self) -> None:
        self._controller = start_controller(_FaultyHandler(self), self.host, 0)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self._sink.close()

    def refuse_for(self, seconds: float, code: int = 421, text_: str = "4.3.2 Service shutting down") -> None:
        self._refuse_reply = f"{code} {text_}"
        self._refuse_until = time.monotonic() + seconds

    def delay_replies(self, seconds: float, for_seconds: float) -> None:
        self._delay = seconds
        self._delay_until = time.monotonic() + for_seconds

    def refuse_randomly(self, probability: float, code: int, text_: str, for_seconds: float) -> None:
        """Answer DATA with `code` for a random share of messages, for a while (soak runs)."""
        self._random_refusals.append((probability, f"{code} {text_}", time.monotonic() + for_seconds))

    def hang_after_data(self, times: int, seconds: float = 10.0) -> None:
        self._hang_left = times
        self.hang_seconds = seconds

    def duplicates(self) -> int:
        with self._lock:
            return sum(count - 1 for count in self.received.values() if count > 1)

    def distinct(self) -> int:
        with self._lock:
            return len(self.received)

    async def _maybe_delay(self) -> None:
        if self._delay and time.monotonic() < self._delay_until:
            await asyncio.sleep(self._delay)

    def _record(self, data: bytes) -> None:
        match = _MESSAGE_ID.search(data)
        message_id = match.group(1).decode() if match else "<no-message-id@sink>"
        with self._lock:
            self.received[message_id] += 1
            self.accepted += 1
            self._sink.write(f"{datetime.now(UTC).isoformat()} {message_id}\n")


class _FaultyHandler(DataHandler):
    def __init__(self, server: FaultySMTPServer) -> None:
        self.server = server

    async def handle_MAIL(self, smtp: SMTP, session: SMTPSession, envelope: Envelope, address: str, options: list[str]) -> str:
        await self.server._maybe_delay()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, smtp: SMTP, session: SMTPSession, envelope: Envelope, address: str, options: list[str]) -> str:
        await self.server._maybe_delay()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def refusal(self, envelope: Envelope) -> str | None:
        server = self.server
        await server._maybe_delay()
        if server.base_delay:
            await asyncio.sleep(server.base_delay)
        if time.monotonic() < server._refuse_until:
            server.refused += 1
            return server._refuse_reply
        for probability, reply, until in list(server._random_refusals):
            if time.monotonic() < until and random.random() < probability:
                server.refused += 1
                return reply
        return None

    async def accept(self, message: ReceivedMessage) -> str:
        server = self.server
        server._record(message.data)
        if server._hang_left > 0:
            server._hang_left -= 1
            server.hung += 1
            # Queued, but the reply never comes in time: the client's DATA time-out fires first.
            await asyncio.sleep(server.hang_seconds)
        return "250 2.0.0 queued"


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    rows: int
    distinct_received: int
    duplicates: int
    states: dict[str, int]
    audit_exit: int
    audit_output: str
    seconds: float
    failed_rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.rows - self.states.get("sent", 0) - self.failed_rows - self.states.get("bounced", 0)


class FaultStack:
    def __init__(
        self,
        root: Path,
        *,
        rows: int,
        environment: dict[str, str] | None = None,
        postgres: PostgresCluster | None = None,
        code_root: Path | None = None,
        redis_persistent: bool = False,
    ) -> None:
        self.root = root
        # Where the workers' and beat's code comes from (another checkout, to measure it "before").
        self.code_root = code_root or PROJECT_ROOT
        self.rows = rows
        self.root.mkdir(parents=True, exist_ok=True)
        self._own_postgres = postgres is None
        self.postgres = postgres or PostgresCluster()
        self.redis = RedisServer(root, persistent=redis_persistent)
        self.smtp = FaultySMTPServer(root / "sink.log")
        self.extra_environment = {**DEFAULT_ENVIRONMENT, **(environment or {})}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.beats: list[subprocess.Popen[bytes]] = []
        self.started_at = time.monotonic()
        self.database_url = ""

    # lifecycle
    def __enter__(self) -> FaultStack:
        if self._own_postgres:
            self.postgres.init()
        self.database_url = self._fresh_database()
        self.redis.start()
        self.smtp.start()
        self.seed()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_processes()
        self.smtp.stop()
        self.redis.stop()
        if self._own_postgres:
            self.postgres.destroy()

    def _fresh_database(self) -> str:
        """A new database per run on the (possibly shared) cluster, migrated with Alembic."""
        name = f"run_{os.getpid()}_{int(time.monotonic() * 1000)}"
        admin = make_engine(self.postgres.url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.postgres.url.rsplit("/", 1)[0] + f"/{name}"
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        return url

    @property
    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.root)),
            "LC_ALL": "C.UTF-8",
            "COURSE_DATABASE_URL": self.database_url,
            "COURSE_BROKER_URL": self.redis.url,
            "COURSE_SMTP_HOST": self.smtp.host,
            "COURSE_SMTP_PORT": str(self.smtp.port),
            "COURSE_SECRET_KEY": "fault-run-secret",
            "COURSE_BASE_URL": "https://courses.example.org",
            "COURSE_VAR_DIR": str(self.root / "var"),
            "PYTHONPATH": str(PROJECT_ROOT),
            **self.extra_environment,
        }

    def seed(self) -> None:
        """`rows` subscribers and one campaign to all of them, due now (the fan-out's INSERT … SELECT)."""
        engine = make_engine(self.database_url)
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO subscribers (email, name, timezone, status, created_at, confirmed_at) "
                    "SELECT 'reader-' || n || '@example.org', 'Reader ' || n, 'UTC', 'active', :now, :now "
                    "FROM generate_series(1, :rows) AS n"
                ),
                {"now": now, "rows": self.rows},
            )
        from sqlalchemy.orm import Session

        with Session(engine) as session, session.begin():
            campaign = schedule_campaign(
                session, name="fault run", subject="A newsletter under faults", body_markdown="Hello **there**.\n\nSecond paragraph.",
                segment_tag=None, sender_name="The Letter", sender_email="news@example.org", send_at=now, now=now,
            )  # fmt: skip
            written = fan_out(session, campaign.id, now=now)
        assert written == self.rows, written
        engine.dispose()

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.root / log_name).open("ab")
        return subprocess.Popen(
            args, env={**self.environment, "PYTHONPATH": str(self.code_root)}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=str(self.code_root), start_new_session=True,
        )  # fmt: skip

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        number = len(self.workers) + 1
        process = self._spawn(
            [str(VENV_BIN / "celery"), "-A", "worker.app", "worker", f"--hostname=w{number}@%h", f"--concurrency={concurrency}",
             "--queues=priority,dispatch,bulk", "--loglevel=WARNING", "--without-mingle", "--without-gossip"],
            f"worker-{number}.log",
        )  # fmt: skip
        self.workers.append(process)
        return process

    def start_workers(self, count: int, concurrency: int = 2) -> None:
        for _ in range(count):
            self.start_worker(concurrency)

    def start_beat(self) -> subprocess.Popen[bytes]:
        number = len(self.beats) + 1
        schedule = self.root / f"beat-{number}-schedule"
        process = self._spawn(
            [str(VENV_BIN / "celery"), "-A", "worker.app", "beat", "--loglevel=WARNING", f"--schedule={schedule}"],
            f"beat-{number}.log",
        )
        self.beats.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its children (a Celery worker's pool), as an OOM kill would."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)

    def stop_processes(self) -> None:
        for process in self.workers + self.beats:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.workers + self.beats:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill(process)

    # observing
    def wait_until_received(self, count: int, timeout: float = 120) -> None:
        wait_until(lambda: self.smtp.accepted >= count, timeout, f"{count} messages at the SMTP server", interval=0.05)

    def states(self) -> dict[str, int]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return {state: count for state, count in connection.execute(select(Delivery.state, func.count()).group_by(Delivery.state))}
        finally:
            engine.dispose()

    def settled(self) -> bool:
        states = self.states()
        return not any(states.get(s, 0) for s in (DeliveryState.PENDING, DeliveryState.LEASED, DeliveryState.SENDING))

    def finish(self, timeout: float = 240) -> RunResult:
        """Wait until no row is open, let the workers go, then run `course audit` with the sink log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.settled():
                    break
            except OperationalError:
                pass
            time.sleep(0.5)
        settled_in = time.monotonic() - self.started_at
        self.stop_processes()
        states = self.states()
        audit = subprocess.run(
            [str(VENV_BIN / "course"), "audit", "--sink-log", str(self.smtp.sink_log), "--max-due-cycles", "30", "--allow-duplicates", "1000000"],
            env=self.environment, capture_output=True, text=True, timeout=120, cwd=str(PROJECT_ROOT),
        )  # fmt: skip
        return RunResult(
            rows=self.rows,
            distinct_received=self.smtp.distinct(),
            duplicates=self.smtp.duplicates(),
            states=states,
            audit_exit=audit.returncode,
            audit_output=audit.stdout + audit.stderr,
            seconds=settled_in,
            failed_rows=states.get("failed", 0),
        )

    def logs(self) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")):
            if log.name == "sink.log":
                continue
            out.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(out)
