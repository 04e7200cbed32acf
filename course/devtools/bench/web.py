"""`course bench --scenario web`: the public web under closed-loop load, next to a bare endpoint.

One run:
1. Recreates a PostgreSQL database of its own (course_bench_web; dropped after the report unless
   --keep-database), migrates it and seeds one 3-lesson course with N readers enrolled in it (a
   lesson day's ledger rows included, so an unsubscribe cancels real rows).
2. Starts two servers exactly as `course web` serves (course.web.server.serve: uvicorn with
   httptools and uvloop, 2 worker processes, no access log): the app, with the signup rate limits
   raised out of the way and a passive statement counter per process, and a bare Starlette
   endpoint that answers "hi", the ceiling of this server on this machine.
3. For each endpoint and each concurrency level, runs Debian's `wrk` (2 threads, keep-alive
   connections, closed loop: each connection sends its next request when the answer arrives) for
   `seconds`, after driving each endpoint once for `warmup_seconds`, unmeasured (a process's
   first render and first connections; the warm-up's slowest answer is in the report). A Lua
   script gives every signup a new address and cycles through signed unsubscribe and preferences
   links; it also counts 4xx and 5xx answers.
4. Reads, per run: requests/s, p50/p99/max latency (wrk's own histogram), and SQL statements and
   commits per request from the app's own counters: every statement and every commit any engine in
   a web process executes. (pg_stat_database's xact_commit was tried first: a backend that goes
   idle flushes its counts up to ten seconds later, too late for a short run.)

The counters live in one 16-byte memory-mapped file per web process (COURSE_BENCH_STATS_DIR/web-<pid>),
so counting costs a memory write and no system call."""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from course.devtools.bench.config import BENCH_SECRET, BenchError

WRK = "/usr/bin/wrk"
COURSE_SLUG = "bench-course"
BARE_FACTORY = "course.web.server:bare_app"
PROBE_FACTORY = "course.devtools.bench.web:probe_app"

Progress = Callable[[str, int, int], None]


@dataclass
class WebBenchConfig:
    admin_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test"
    database: str = "course_bench_web"
    seconds: float = 10.0  # per endpoint and concurrency level
    connections: tuple[int, ...] = (16, 64)
    threads: int = 2  # wrk threads
    web_workers: int = 2
    readers: int = 5_000  # enrolled readers whose unsubscribe and preferences links are driven
    endpoints: tuple[str, ...] = ()  # empty: all of ENDPOINTS
    keep_database: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # Each endpoint is driven this long, unmeasured, before its first measured run: what a process
    # does once (its first page render, its first connections to the database) is not what it
    # does per request. The warm-up's own slowest answer is reported apart.
    warmup_seconds: float = 2.0

    @property
    def database_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.database}"


# --- what runs inside the servers -----------------------------------------------------------------


def probe_app() -> Any:
    """served_app() as `course web` builds it, plus a passive count of the SQL statements this
    process executes (an executemany counts once per parameter set, as the server sees it)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from course.web.server import served_app

    stats_dir = os.environ.get("COURSE_BENCH_STATS_DIR")
    if stats_dir:
        path = Path(stats_dir) / f"web-{os.getpid()}"
        path.write_bytes(bytes(16))
        with path.open("r+b") as handle:
            counter = mmap.mmap(handle.fileno(), 16)
        counts = [0, 0]  # statements, commits

        @event.listens_for(Engine, "before_cursor_execute")
        def _statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            counts[0] += len(parameters) if executemany and parameters else 1
            struct.pack_into("<QQ", counter, 0, *counts)

        @event.listens_for(Engine, "commit")
        def _commit(conn: Any) -> None:
            counts[1] += 1
            struct.pack_into("<QQ", counter, 0, *counts)

    return served_app()


def counted_so_far(stats_dir: Path) -> tuple[int, int]:
    """(statements, commits) of every web process so far."""
    statements = commits = 0
    for path in stats_dir.glob("web-*"):
        with contextlib.suppress(OSError, struct.error):
            more_statements, more_commits = struct.unpack("<QQ", path.read_bytes()[:16])
            statements += more_statements
            commits += more_commits
    return statements, commits


# --- wrk ------------------------------------------------------------------------------------------

# Shared by every endpoint's script: per-thread ids, 4xx/5xx counts, and one line the harness parses.
_LUA_COMMON = r"""
local threads = {}
setup = function(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
client_errors, server_errors, sequence = 0, 0, 0
response = function(status, headers, body)
  if status >= 500 then server_errors = server_errors + 1
  elseif status >= 400 then client_errors = client_errors + 1 end
end
done = function(summary, latency, requests)
  local c4, c5 = 0, 0
  for _, t in ipairs(threads) do c4 = c4 + t:get("client_errors"); c5 = c5 + t:get("server_errors") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d c4=%d c5=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max, c4, c5,
    e.connect + e.read + e.write + e.timeout))
end
"""

_LUA_PATHS = r"""
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  sequence = id * 7919
end
request = function()
  sequence = sequence + 1
  return wrk.format(METHOD, paths[sequence % #paths + 1], HEADERS, BODY)
end
"""

# Every signup from a reader of its own: a new address, and a client address of its own in
# X-Forwarded-For (the app servers list 127.0.0.1 in COURSE_TRUSTED_PROXIES), as a viral article's
# readers arrive. From one address, every signup would queue on that address's rate-limit row.
_LUA_SIGNUP = r"""
local tag
init = function(args) tag = args[1] end
request = function()
  sequence = sequence + 1
  local email = "r" .. tag .. "-" .. id .. "-" .. sequence .. "@example.org"
  HEADERS["X-Forwarded-For"] = string.format("10.%d.%d.%d", id % 256, math.floor(sequence / 256) % 256, sequence % 256)
  return wrk.format("POST", PATH, HEADERS, string.format(BODY, email))
end
"""

# A GET as a browser sends it: accepting gzip, so the figures include compressing the page.
_BROWSER_GET = 'METHOD, HEADERS, BODY = "GET", {["Accept-Encoding"] = "gzip"}, nil'

# endpoint -> (description, script body, Lua globals)
ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "bare": ("GET / on the bare Starlette app", _LUA_PATHS, _BROWSER_GET),
    "static": ("GET /static/site.<hash>.css (the address pages link)", _LUA_PATHS, _BROWSER_GET),
    "course": (f"GET /courses/{COURSE_SLUG}", _LUA_PATHS, _BROWSER_GET),
    "api-signup": (
        "POST /api/subscriptions (new addresses)",
        _LUA_SIGNUP,
        'PATH = "/api/subscriptions"\nHEADERS = {["Content-Type"] = "application/json"}\n'
        f'BODY = \'{{"course": "{COURSE_SLUG}", "email": "%s", "name": "Reader", "timezone": "Europe/Berlin"}}\'',
    ),
    "form-signup": (
        f"POST /courses/{COURSE_SLUG}/subscribe (form, new addresses)",
        _LUA_SIGNUP,
        f'PATH = "/courses/{COURSE_SLUG}/subscribe"\n'
        'HEADERS = {["Content-Type"] = "application/x-www-form-urlencoded"}\n'
        'BODY = "email=%s&name=Reader&timezone=Europe%%2FBerlin"',
    ),
    "unsubscribe": (
        "POST /u/{token} (RFC 8058 one-click)",
        _LUA_PATHS,
        'METHOD = "POST"\nHEADERS = {["Content-Type"] = "application/x-www-form-urlencoded"}\n'
        'BODY = "List-Unsubscribe=One-Click"',
    ),
    "preferences": ("GET /preferences/{token}", _LUA_PATHS, _BROWSER_GET),
}


def parse_wrk(output: str) -> dict[str, int]:
    """The BENCH line our Lua `done` writes."""
    for line in output.splitlines():
        if line.startswith("BENCH "):
            return {key: int(value) for key, value in (part.split("=") for part in line.split()[1:])}
    raise BenchError(f"wrk gave no result: {output[-1000:]}")


def run_wrk(url: str, script: Path, args: list[str], *, connections: int, threads: int, seconds: float) -> dict[str, int]:
    command = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", str(script), url, "--", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({' '.join(command)}): {result.stderr[-1000:]}")
    return parse_wrk(result.stdout)


# --- servers --------------------------------------------------------------------------------------


def start_server(factory: str, port: int, env: dict[str, str], workers: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "course.devtools.bench.web", factory, str(port), str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the web server ({factory}) exited at start: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                answer.read()
            return process
        time.sleep(0.2)
    stop_server(process)
    raise BenchError(f"the web server ({factory}) did not answer on port {port} within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the run --------------------------------------------------------------------------------------


def _seed(engine: Any, readers: int, secret: str) -> tuple[list[str], list[str]]:
    """The course and its readers; returns their unsubscribe and preferences paths."""
    from sqlalchemy import select, text
    from sqlalchemy.orm import sessionmaker

    from course.delivery.links import LinkPurpose, Signer
    from course.devtools.bench.seed import seed_course, seed_lesson_day, seed_subscribers
    from course.models import Enrollment

    now = datetime.now(timezone.utc)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        seed_subscribers(session, readers, now=now, tag=None)
        course_id, lesson_ids = seed_course(session, now=now)
        seed_lesson_day(session, course_id=course_id, lesson_ids=lesson_ids, now=now, due_at=now + timedelta(days=1))
        pairs = session.execute(select(Enrollment.subscriber_id, Enrollment.course_id)).all()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    signer = Signer(secret=secret, base_url="")
    unsubscribe = [f"/u/{signer.token(LinkPurpose.UNSUBSCRIBE, s, c)}" for s, c in pairs]
    preferences = [f"/preferences/{signer.token(LinkPurpose.PREFERENCES, s, c)}" for s, c in pairs]
    return unsubscribe, preferences


def run_web_benchmark(config: WebBenchConfig, progress: Progress) -> dict[str, Any]:
    from sqlalchemy import text

    from course import schema
    from course.db import make_engine
    from course.devtools.bench.harness import BenchConfig, drop_database, free_port, recreate_database
    from course.web.app import STATIC_DIR
    from course.web.static_assets import StaticAssets

    if not Path(WRK).exists():
        raise BenchError(f"{WRK} not found: install Debian's wrk (scripts/services.sh does)")
    endpoints = config.endpoints or tuple(ENDPOINTS)
    unknown = [name for name in endpoints if name not in ENDPOINTS]
    if unknown:
        raise BenchError(f"unknown endpoint {', '.join(unknown)} (known: {', '.join(ENDPOINTS)})")
    if "bare" not in endpoints:
        endpoints = ("bare", *endpoints)  # every figure is reported as a ratio to it
    database = BenchConfig(admin_url=config.admin_url, database=config.database)
    work_dir = Path(tempfile.mkdtemp(prefix="course-bench-web-"))
    stats_dir = work_dir / "stats"
    stats_dir.mkdir()
    servers: list[subprocess.Popen[bytes]] = []
    engine = None
    try:
        progress("seeding", 0, 1)
        recreate_database(database)
        engine = make_engine(config.database_url)
        schema.upgrade(engine)
        unsubscribe_paths, preference_paths = _seed(engine, config.readers, BENCH_SECRET)
        path_files = {
            "bare": ["/"], "static": [StaticAssets(STATIC_DIR).url("site.css")], "course": [f"/courses/{COURSE_SLUG}"],
            "unsubscribe": unsubscribe_paths, "preferences": preference_paths,
        }
        env = {
            **os.environ,
            "COURSE_DATABASE_URL": config.database_url,
            "COURSE_SECRET_KEY": BENCH_SECRET,
            "COURSE_VAR_DIR": str(work_dir / "var"),
            "COURSE_SIGNUP_LIMIT_PER_IP": str(10**9),
            "COURSE_SIGNUP_LIMIT_PER_ADDRESS": str(10**9),
            # wrk is the local proxy here: its X-Forwarded-For gives each signup a client address
            # of its own (the app believes forwarded headers only from listed proxies).
            "COURSE_TRUSTED_PROXIES": "127.0.0.1",
            "COURSE_BENCH_STATS_DIR": str(stats_dir),
            **config.extra_env,
        }
        progress("starting servers", 0, 1)
        bare_port, app_port = free_port(), free_port()
        servers.append(start_server(BARE_FACTORY, bare_port, env, config.web_workers, work_dir / "bare.log"))
        servers.append(start_server(PROBE_FACTORY, app_port, env, config.web_workers, work_dir / "app.log"))
        runs: list[dict[str, Any]] = []
        warmup: dict[str, float] = {}
        steps = [(name, level) for level in config.connections for name in endpoints]
        for step, (name, level) in enumerate(steps):
            progress(f"{name} × {level} connections", step, len(steps))
            description, body, globals_ = ENDPOINTS[name]
            script = work_dir / f"{name}.lua"
            script.write_text(globals_ + "\n" + _LUA_COMMON + body)
            if name in path_files:
                paths_file = work_dir / f"{name}.paths"
                paths_file.write_text("\n".join(path_files[name]) + "\n")
                args = [str(paths_file)]
            else:
                args = [f"{level}x{step}"]  # keeps every run's addresses new
            port = bare_port if name == "bare" else app_port
            if name not in warmup and config.warmup_seconds > 0:
                warm_args = args if name in path_files else [f"warmup{step}"]
                warmed = run_wrk(f"http://127.0.0.1:{port}", script, warm_args, connections=level,
                                 threads=config.threads, seconds=config.warmup_seconds)
                warmup[name] = warmed["max_us"] / 1000
            statements_before, commits_before = counted_so_far(stats_dir)
            measured = run_wrk(f"http://127.0.0.1:{port}", script, args, connections=level,
                               threads=config.threads, seconds=config.seconds)
            statements_after, commits_after = counted_so_far(stats_dir)
            statements, commits = statements_after - statements_before, commits_after - commits_before
            requests = measured["requests"]
            runs.append({
                "endpoint": name, "description": description, "connections": level, "requests": requests,
                "requests_per_second": round(requests / (measured["duration_us"] / 1e6), 1),
                "p50_ms": measured["p50_us"] / 1000, "p99_ms": measured["p99_us"] / 1000,
                "max_ms": measured["max_us"] / 1000,
                "status_4xx": measured["c4"], "status_5xx": measured["c5"], "socket_errors": measured["socket_errors"],
                "statements_per_request": round(statements / requests, 2) if requests else None,
                "commits_per_request": round(commits / requests, 2) if requests else None,
            })
        progress("done", len(steps), len(steps))
        with engine.connect() as connection:
            load = os.getloadavg()
            postgres = connection.execute(text("SHOW server_version")).scalar()
        return _report(config, runs, load, postgres, warmup)
    finally:
        for server in servers:
            stop_server(server)
        if engine is not None:
            engine.dispose()
        if not config.keep_database:
            with contextlib.suppress(Exception):
                drop_database(database)
        shutil.rmtree(work_dir, ignore_errors=True)


def _report(
    config: WebBenchConfig, runs: list[dict[str, Any]], load: tuple[float, float, float], postgres: str,
    warmup: dict[str, float],
) -> dict[str, Any]:
    bare = {run["connections"]: run["requests_per_second"] for run in runs if run["endpoint"] == "bare"}
    for run in runs:
        ceiling = bare.get(run["connections"])
        run["ratio_to_bare"] = round(run["requests_per_second"] / ceiling, 3) if ceiling else None
    return {
        "scenario": "web", "web_workers": config.web_workers, "wrk_threads": config.threads,
        "seconds_per_run": config.seconds, "connections": list(config.connections), "readers": config.readers,
        "load_average": [round(value, 2) for value in load], "cpus": os.cpu_count(), "postgres": postgres,
        "warmup_seconds": config.warmup_seconds, "warmup_max_ms": warmup, "runs": runs,
    }


def web_report_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"course bench: web, {report['web_workers']} web workers, wrk {report['wrk_threads']} threads, "
                        f"{report['seconds_per_run']:g} s a run, load average {report['load_average'][0]}")
    for column in ("endpoint", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "× bare", "stmts/req",
                   "commits/req", "4xx", "5xx"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for run in report["runs"]:
        table.add_row(
            run["endpoint"], str(run["connections"]), f"{run['requests_per_second']:,.0f}", f"{run['p50_ms']:.1f}",
            f"{run['p99_ms']:.1f}", f"{run['max_ms']:.0f}", f"{run['ratio_to_bare']:.3f}",
            str(run["statements_per_request"]), str(run["commits_per_request"]), str(run["status_4xx"]),
            str(run["status_5xx"]),
        )
    table.caption = "; ".join(f"{name}: {description}" for name, (description, _, _) in ENDPOINTS.items()
                              if any(run["endpoint"] == name for run in report["runs"]))
    if report["warmup_max_ms"]:
        table.caption += (f". Each endpoint warmed up {report['warmup_seconds']:g} s before its first run, unmeasured; "
                          "its slowest answer then: " + ", ".join(f"{name} {ms:,.0f} ms" for name, ms in report["warmup_max_ms"].items()))
    return table


if __name__ == "__main__":
    # The servers the harness starts: `python -m course.devtools.bench.web FACTORY PORT WORKERS`.
    from course.web.server import serve

    factory, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve(host="127.0.0.1", port=port, workers=workers, factory=factory)
