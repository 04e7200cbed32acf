"""The one settings object. Every value comes from the environment (prefix ``COURSE_``) or a default
that suits the embedded single-machine mode: SQLite under ``var/``, a local SMTP sink, and Redis only
when ``REDIS_URL`` answers."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET = "dev-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    var_dir: Path = PROJECT_ROOT / "var"
    content_dir: Path = PROJECT_ROOT / "content"
    templates_dir: Path = PROJECT_ROOT / "templates"

    database_url: str = ""  # empty: SQLite at var/course.db
    # REDIS_URL is the conventional name; COURSE_REDIS_URL works too.
    redis_url: str = Field("", validation_alias=AliasChoices("COURSE_REDIS_URL", "REDIS_URL"))
    broker_url: str = ""  # empty: Redis when redis_url answers, else SQLite-backed kombu transport

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout: float = 30.0
    mail_dir: Path = PROJECT_ROOT / "var" / "mail"

    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEFAULT_SECRET
    unsubscribe_mailto: str = "unsubscribe@localhost"
    list_id_domain: str = "course.localhost"

    # Dispatcher and sender limits: one place, with defaults.
    dispatch_interval_seconds: float = 5.0
    dispatch_batch_size: int = 1000
    dispatch_max_batches: int = 50  # per dispatcher run, so one run cannot starve the beat
    # Rows handed to workers and not yet sent, at most: keep it well under what the fleet sends in
    # lease_seconds, or queued rows would outlive their lease.
    dispatch_max_in_flight: int = 50_000
    send_chunk_size: int = 500  # deliveries per send task: 5 statements and 2 Redis commands a task (docs/performance.md)
    lease_seconds: int = 300
    max_attempts: int = 8
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 6 * 3600.0

    # Demo clock: the course calendar runs `clock_speed` times faster than the wall clock,
    # counted from `clock_origin` (a Unix time). speed 1 is the real clock.
    clock_speed: float = 1.0
    clock_origin: float = 0.0

    # Subscriber web (course/web, course/subscriptions.py).
    confirm_link_max_age_days: int = 7
    unconfirmed_retention_days: int = 30  # pending subscribers older than this are purged
    signup_limit_per_ip: int = 20  # signups per IP address per rate_limit_window_seconds
    signup_limit_per_address: int = 3  # confirmation mails per address per window
    rate_limit_window_seconds: int = 3600
    max_request_bytes: int = 64 * 1024  # larger bodies get 413 before they are parsed
    embed_frame_ancestors: str = "*"  # CSP frame-ancestors of the embeddable form, e.g. "https://blog.example.com"
    # Origins whose pages may call the JSON API from a browser, e.g. "https://blog.example.com"
    # (several: separated by commas or spaces). Empty: no cross-origin browser calls; server-to-server
    # calls need no CORS at all.
    api_cors_origins: str = ""

    # Web admin (course/web/admin, course/accounts).
    admin_session_idle_minutes: int = 60  # a session unused this long ends
    admin_session_max_hours: int = 12  # and every session ends this long after sign-in
    admin_login_limit_per_account: int = 5  # failed sign-ins per account per admin_login_window_seconds
    admin_login_limit_per_ip: int = 20  # failed sign-ins per IP address per window
    admin_login_window_seconds: int = 900
    # Who campaigns may come from: "Name <address>" entries separated by commas or new lines.
    campaign_senders: str = "Newsletter <newsletter@example.org>"

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [origin.rstrip("/") for origin in self.api_cors_origins.replace(",", " ").split()]

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'course.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
