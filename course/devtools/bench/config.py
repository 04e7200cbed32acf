"""What one benchmark run is asked to do (BenchConfig), the tools and secrets it uses, and its one
error type."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# The sending pipeline's scenarios (harness.run_benchmark), then the audience count (audience.py),
# the public web (web.py) and a signup burst during a campaign (mixed.py).
PIPELINE_SCENARIOS = ("lesson-day", "campaign")

SCENARIOS = (*PIPELINE_SCENARIOS, "audience", "web", "mixed", "import", "throttled", "admin")

SMTP_SINK = "/usr/sbin/smtp-sink"

SMTP_SOURCE = "/usr/sbin/smtp-source"

BENCH_SECRET = "bench-secret"


class BenchError(RuntimeError):
    """A service or tool the benchmark needs is missing: the message says which and how to get it."""


@dataclass
class BenchConfig:
    scenario: str = "lesson-day"
    subscribers: int = 100_000
    workers: int = 0  # 0: one per core
    pool: str = "solo"
    concurrency: int = 1  # per worker process (prefork/threads)
    admin_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test"
    database: str = "course_bench"
    redis_url: str = "redis://127.0.0.1:6379/14"
    ceiling: bool = True
    keep_database: bool = False  # leave course_bench in place after the run, to look into it
    due_margin_seconds: float = 10.0  # lesson day: rows fall due this long (+100 µs a subscriber) after seeding starts
    timeout_seconds: float = 3600.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def database_url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.database}"

    @property
    def connections(self) -> int:
        """SMTP connections the pipeline holds open: one per sending thread or process."""
        return self.worker_count * (self.concurrency if self.pool in ("prefork", "threads") else 1)
