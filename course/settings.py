"""The one settings object. Every value comes from the environment (prefix ``COURSE_``) or a default
that suits the embedded single-machine mode: SQLite under ``var/``, a local SMTP sink, and Redis only
when ``REDIS_URL`` answers."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET = "dev-secret-change-me"
# The provider built from the COURSE_SMTP_* variables; every delivery goes through it today.
DEFAULT_PROVIDER = "default"
PROVIDER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # fits deliveries.provider (String(64))


class ProviderSettings(BaseModel):
    """One way out for mail: today an SMTP relay. More providers are configured by name in
    COURSE_PROVIDERS (a JSON object of these); routing deliveries to them is not built yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["smtp"] = "smtp"
    host: str
    port: int = Field(587, ge=1, le=65535)
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = Field(30.0, gt=0)
    # Messages per second at most through this provider. Accepted and validated, not enforced yet:
    # the per-provider limit lands with routing (issue 9 leaves room for it here).
    max_per_second: float | None = Field(None, gt=0)


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
    # Further providers by name, as JSON: {"bulk-relay": {"host": "smtp.example.net", "port": 587,
    # "username": "...", "password": "...", "starttls": true, "max_per_second": 50}}. The name
    # "default" is reserved for the COURSE_SMTP_* provider above.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
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
    # How often a web process asks whether `course import` changed the catalogue it caches (course
    # pages, the list, the embed page, course ids for signups): a page is at most this old.
    catalogue_recheck_seconds: float = Field(1.0, ge=0)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, providers: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        for name in providers:
            if name == DEFAULT_PROVIDER:
                raise ValueError(
                    f"COURSE_PROVIDERS: the provider name {DEFAULT_PROVIDER!r} is reserved, "
                    "configure it with the COURSE_SMTP_* variables"
                )
            if not re.match(PROVIDER_NAME_PATTERN, name):
                raise ValueError(
                    f"COURSE_PROVIDERS: provider name {name!r} must be 1-64 lower-case letters, digits, '-' or '_'"
                )
        return providers

    @property
    def default_provider(self) -> ProviderSettings:
        return ProviderSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=self.smtp_password,
            starttls=self.smtp_starttls,
            timeout=self.smtp_timeout,
        )

    @property
    def provider_settings(self) -> dict[str, ProviderSettings]:
        """Every configured provider by name, `default` first."""
        return {DEFAULT_PROVIDER: self.default_provider, **self.providers}

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
